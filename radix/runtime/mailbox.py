"""What goes into an actor's mailbox: commands and reads (`Envelope`; a read's command is `READ`) and
control requests (`Prepare`, `Move`, `PASSIVATE`, `STOP`), and the mailbox itself."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from radix.errors import RadixError

__all__ = [
    "PASSIVATE",
    "READ",
    "STOP",
    "Envelope",
    "Item",
    "Mailbox",
    "MailboxFullError",
    "Move",
    "Passivate",
    "Prepare",
    "Read",
]


class Envelope(msgspec.Struct, frozen=True):
    """A decoded command, and the message it came in (to forward it unchanged).

    A struct, not a frozen dataclass: one is made per command, and a frozen dataclass's
    `__init__` sets each field through `object.__setattr__` (4.4 µs here, against 0.2)."""

    command: Any
    type_name: str
    command_id: str
    expected_version: int | None
    issuer: str | None
    correlation_id: str | None
    reply_to: str | None
    subject: str
    payload: bytes
    headers: dict[str, str]
    hops: int = 0
    received: float = 0.0


class Read:
    """The command of an envelope that asks for the aggregate's state rather than changing it."""


#: The command of every read (one instance serves every read).
READ = Read()


@dataclass(frozen=True, slots=True)
class Move:
    """Put in a mailbox to hand the aggregate to another node once everything before it is handled."""

    node: str
    incarnation: str
    requested: float


@dataclass(frozen=True, slots=True)
class Prepare:
    """Put in a mailbox before a `Move`, while the actor still serves: it writes its snapshot now, so that
    the move's own (written while its shard pauses) has little or nothing left to write; then calls `done`."""

    done: Callable[[], None]


class Passivate:
    """Put in a mailbox to passivate the actor if it is still idle when it gets there."""


#: Put in a mailbox to passivate the actor if it is still idle then (one instance serves every actor).
PASSIVATE = Passivate()
#: Put in a mailbox to ask the actor to stop once everything before it is handled.
STOP = None
Item = Envelope | Prepare | Move | Passivate | None


class MailboxFullError(RadixError):
    """An actor's mailbox holds as many commands as it takes: the command was not queued."""


class Mailbox:
    """An actor's queue of commands and control requests.

    Its deque exists only while it holds something (a node holds one mailbox per live
    aggregate, most of them empty). Commands beyond `limit` are refused with
    `MailboxFullError`; control requests are always taken.
    """

    __slots__ = ("_items", "_limit")

    def __init__(self, limit: int) -> None:
        self._items: deque[Item] | None = None
        self._limit = limit

    def empty(self) -> bool:
        return not self._items

    def __len__(self) -> int:
        return len(self._items) if self._items else 0

    def put(self, item: Item) -> None:
        items = self._items
        if items is None:
            items = self._items = deque()
        elif isinstance(item, Envelope) and len(items) >= self._limit:
            raise MailboxFullError(f"{len(items)} commands are queued")
        items.append(item)

    def get_nowait(self) -> Item:
        assert self._items
        return self._items.popleft()

    def release(self) -> None:
        """Drop the empty deque (the actor parks)."""
        if not self._items:
            self._items = None
