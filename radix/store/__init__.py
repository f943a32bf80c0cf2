"""The event store port: append a command's events to one aggregate, read them back.

Two implementations behave identically (one contract test suite runs against both):
`InMemoryEventStore` for fast unit tests of domain logic, and `JetStreamEventStore`,
the real one. Versions are assigned by the store: an aggregate's first event is
version 1 and versions are contiguous. An append is atomic and conditional on the
expected version. Re-appending the command that made the aggregate's last commit
(or one still in the server's duplicate window) answers the original commit instead
of appending again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from radix.domain import EventData
from radix.names import Address
from radix.store._commit import Cause, Commit, Writer
from radix.store.jetstream import JetStreamEventStore, StoreConfig
from radix.store.memory import InMemoryEventStore

__all__ = ["Cause", "Commit", "EventStore", "InMemoryEventStore", "JetStreamEventStore", "StoreConfig", "Writer"]


class EventStore(Protocol):
    """What the runtime needs from an event store."""

    async def append(
        self,
        address: Address,
        events: Sequence[EventData],
        *,
        expected_version: int,
        command_id: str,
        correlation_id: str | None = None,
        issuer: str | None = None,
        causes: Sequence[Cause] | None = None,
        writer: Writer | None = None,
    ) -> Commit:
        """Append one command's events atomically if the aggregate is at `expected_version`.

        Raises `VersionConflictError` (with the actual version) when it is not,
        `CommitTooLargeError` when the commit exceeds the server's message size.
        `causes`, one per event, lets one commit hold several commands' events (group
        commit); the first must be `command_id`, which keys the commit for idempotence.
        `writer` (the node and its lease epoch) is stored with the commit, so a history
        shows who wrote each commit under which lease.
        """
        ...

    async def read(self, address: Address, *, after: int = 0, start: int = 0, leader: bool = False) -> list[Commit]:
        """The commits holding the aggregate's events after version `after`, in order.

        `start` is a position hint: no commit before that stream position holds
        an event after `after` (a snapshot records it). Events at or before
        `after` are trimmed from the first commit. Reads may be answered by any replica, and
        one that lags answers from the past; `leader=True` asks the stream's leader, one commit
        per round trip: for the few commits a lagging replica did not have.
        """
        ...

    async def version(self, address: Address) -> int:
        """The aggregate's current version: 0 when it has no events."""
        ...

    async def commit_at(self, address: Address, position: int) -> Commit | None:
        """The aggregate's commit at stream `position`; None if the aggregate has none there."""
        ...

    async def head(self, address: Address) -> int:
        """The stream position of the aggregate's last commit (0: none), as the stream's leader has it.

        Reads may be answered by any replica, and one that lags answers from the past; this one is
        not. A decision that writes nothing (a rejection) is checked against it before it is given.
        """
        ...
