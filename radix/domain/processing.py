"""Reactions and projections: what a context does with its events once they are stored.

A reaction (a policy, a process manager's step) handles events and returns the commands to send;
a projection folds events into a read model: into a `KVView` its handler returns writes (`Put`,
`Delete`, `Update`), as data; into an `SQLiteView` it gets the connection inside the transaction
that also moves the projection's checkpoint; into a `ViewStore` of your own, what that store gives.
`radix/examples/restock.py` declares one of each:

    @reaction("restock", on=[ItemsRemoved])
    def restock(record: Record[ItemsRemoved]) -> list[Send]: ...

    @projection("stock", on=[ItemCreated, ItemsCheckedIn, ItemsRemoved], into=KVView())
    def stock(record: Record[Any]) -> list[Write]: ...

    inventory = BoundedContext("inventory", [InventoryItem()], reactions=[restock], projections=[stock])

Handlers are plain functions of the record, so they are tested by calling them (`radix.testing.react`,
`radix.testing.project`). Nodes hosting the context run them (`radix.runtime.processors`,
docs/reactions-and-projections.md). Nothing here does I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from radix.domain.model import Command, Event, event_type_name
from radix.errors import DefinitionError
from radix.wire.names import validate_processor

if TYPE_CHECKING:
    from radix.domain.context import BoundedContext

__all__ = [
    "Delete",
    "KVView",
    "Projection",
    "Put",
    "Reaction",
    "Record",
    "SQLiteView",
    "Selection",
    "Send",
    "Update",
    "View",
    "ViewStore",
    "Write",
    "command_id_for",
    "projection",
    "reaction",
]

E = TypeVar("E", bound=Event, covariant=True)


@dataclass(frozen=True, slots=True)
class Record(Generic[E]):
    """One stored event as a handler sees it: where it happened, the event (in its newest version, read
    through the context's upcasters), and what caused it."""

    namespace: str
    context: str
    aggregate_type: str
    aggregate_id: str
    version: int
    event: E
    command_id: str
    correlation_id: str | None = None
    issuer: str | None = None
    schema: str = "1.0"
    """The version it is stored under."""
    position: int = 0
    """Its position in the context's feed: what a projection's checkpoint counts."""

    @property
    def type_name(self) -> str:
        return event_type_name(type(self.event))

    @property
    def name(self) -> str:
        """The event's name: `{Type}/{id}@{version}`, unique and stable (a command a reaction sends for it
        takes its id from this)."""
        return f"{self.aggregate_type}/{self.aggregate_id}@{self.version}"


@dataclass(frozen=True, slots=True)
class Send:
    """A command a reaction sends: to `aggregate_id` of the aggregate type that handles the command, in
    `context` (the reaction's own when None), in the namespace of the event."""

    command: Command
    aggregate_id: str
    context: BoundedContext | None = None


def command_id_for(reaction: str, context: str, record: Record[Any], index: int) -> str:
    """The id of the `index`-th command `reaction` sends for `record`: the same each time the event is
    handled, so the aggregate applies it once. Readable while it fits a command id, else hashed."""
    readable = f"{reaction}:{context}/{record.name}:{index}"
    if len(readable) <= 128:
        return readable
    return f"{reaction}:{hashlib.sha256(readable.encode()).hexdigest()[:40]}:{index}"


# -- what a key-value projection writes -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Put:
    """Set `key` of the view to `value` (any value msgspec encodes as JSON)."""

    key: str
    value: Any


@dataclass(frozen=True, slots=True)
class Delete:
    """Remove `key` from the view."""

    key: str


@dataclass(frozen=True, slots=True)
class Update:
    """Set `key` to `change(current)`, `current` being the key's value (or `default` if it has none)."""

    key: str
    change: Callable[[Any], Any]
    default: Any = None


Write = Put | Delete | Update


def apply_writes(view: dict[str, Any], writes: Iterable[Write]) -> None:
    """Apply a handler's writes to a view held as a dict, in order (as every view store does)."""
    for write in writes:
        if isinstance(write, Put):
            view[write.key] = write.value
        elif isinstance(write, Delete):
            view.pop(write.key, None)
        else:
            view[write.key] = write.change(view.get(write.key, write.default))


# -- selection ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """Which events a handler is given: of these event types, of these aggregate types, and on aggregate
    subjects matching these wildcards (over `{Type}.{id}`, with NATS's `*` and `>`); all, where empty."""

    events: frozenset[str] = frozenset()
    aggregates: frozenset[str] = frozenset()
    subjects: tuple[str, ...] = ()

    def matches(self, aggregate_type: str, aggregate_id: str, event_type: str) -> bool:
        if self.events and event_type not in self.events:
            return False
        if self.aggregates and aggregate_type not in self.aggregates:
            return False
        return not self.subjects or any(_wildcard(p, (aggregate_type, aggregate_id)) for p in self.subjects)


def _wildcard(pattern: str, tokens: tuple[str, ...]) -> bool:
    parts = pattern.split(".")
    for i, part in enumerate(parts):
        if part == ">":
            return len(tokens) > i
        if i >= len(tokens) or (part != "*" and part != tokens[i]):
            return False
    return len(parts) == len(tokens)


def _selection(on: Sequence[type[Event]], aggregates: Sequence[str], subjects: Sequence[str]) -> Selection:
    for event in on:
        if not (isinstance(event, type) and issubclass(event, Event)):
            raise DefinitionError(f"on= takes Event types, not {event!r}")
    for pattern in subjects:
        if len(pattern.split(".")) > 2 or not pattern:
            raise DefinitionError(f"the subject wildcard {pattern!r} is over 'Type.id': at most two tokens")
    return Selection(frozenset(event_type_name(e) for e in on), frozenset(aggregates), tuple(subjects))


# -- reactions and projections ----------------------------------------------------------------


def _check_processor(kind: str, name: str, attempts: int) -> None:
    validate_processor(name)
    if attempts < 1:
        raise DefinitionError(f"{kind} {name!r}: attempts must be at least 1")


@dataclass(frozen=True)
class Reaction:
    """Handles a context's events by sending commands; see the module's docstring."""

    name: str
    handle: Callable[[Record[Any]], Iterable[Send]]
    on: Selection = field(default_factory=Selection)
    attempts: int = 5
    """How many times an event is tried (a handler that raises, a command answered `error` or not at
    all) before it is parked."""
    live: bool = True
    """Run by the nodes on every event as it comes; False: only on demand, over the stored history, by
    `radix merge` (a staged rollout: a chosen subset first, then the rest)."""

    def __post_init__(self) -> None:
        _check_processor("reaction", self.name, self.attempts)


class View(Protocol):
    """One namespace's read model of a projection, open: its checkpoints (one per feed partition) and
    the model, written together."""

    def describe(self) -> str:
        """What it is, for status and logs (`KV bucket radix_demo_inventory_view_stock`)."""
        ...

    async def checkpoint(self, partition: int) -> int:
        """The feed position of the last event applied in `partition` (0: none)."""
        ...

    async def apply(
        self, partition: int, records: Sequence[Record[Any]], handle: Callable[..., Any], *, parked: str | None = None
    ) -> None:
        """Apply `records` (of one partition, in order, each after the checkpoint) through `handle`, and move
        the checkpoint to the last of them, atomically: after a crash, either all or none of it is there.
        With `parked` (a parked event's key, retried), the checkpoint stays, and the key is recorded in the
        same write instead (`was_applied`)."""
        ...

    async def was_applied(self, parked: str) -> bool:
        """Whether the parked event of that key was applied by a retry."""
        ...

    async def reset(self) -> None:
        """Drop the read model and every checkpoint (a rebuild starts from the feed's beginning)."""
        ...

    async def close(self) -> None: ...


class ViewStore(Protocol):
    """A store of your own for a projection's read model (beside `KVView` and `SQLiteView`)."""

    def describe(self) -> str: ...

    async def open(self, namespace: str, context: str, projection: str, connection: Any) -> View:
        """The read model of one namespace's context (`connection`: the node's NATS connection)."""
        ...


@dataclass(frozen=True)
class KVView:
    """Keep the read model in a KV bucket of its own (`radix_{ns}_{ctx}_view_{name}`): the handler returns
    writes (`Put`, `Delete`, `Update`); an event's writes and its partition's checkpoint go in one atomic
    batch (`radix.store.views`)."""

    replicas: int = 1
    timeout: float = 5.0

    def describe(self) -> str:
        return "a KV bucket"


@dataclass(frozen=True)
class SQLiteView:
    """Keep the read model in an SQLite database: the handler takes `(record, db)` and writes with the
    connection inside the transaction that also moves the partition's checkpoint.

    `schema` (SQL, run when opened) creates the projection's tables; `tables` are emptied by a reset.
    SQLite is a file on one host: the nodes serving the projection must share it (or use a database
    they all reach, through a `ViewStore` of your own).
    """

    path: str | Path
    schema: str = ""
    tables: tuple[str, ...] = ()

    def describe(self) -> str:
        return f"SQLite database {self.path}"


@dataclass(frozen=True)
class Projection:
    """Folds a context's events into a read model kept by `into`; see the module's docstring."""

    name: str
    handle: Callable[..., Any]
    into: KVView | SQLiteView | ViewStore
    on: Selection = field(default_factory=Selection)
    attempts: int = 5

    def __post_init__(self) -> None:
        _check_processor("projection", self.name, self.attempts)


def reaction(
    name: str,
    *,
    on: Sequence[type[Event]] = (),
    aggregates: Sequence[str] = (),
    subjects: Sequence[str] = (),
    attempts: int = 5,
    live: bool = True,
) -> Callable[[Callable[[Record[Any]], Iterable[Send]]], Reaction]:
    """Declare a function of a `Record` returning `Send`s as a reaction named `name` (`live=False`: run
    on demand only, by `radix merge`)."""

    def declare(handle: Callable[[Record[Any]], Iterable[Send]]) -> Reaction:
        return Reaction(name, handle, _selection(on, aggregates, subjects), attempts, live)

    return declare


def projection(
    name: str,
    *,
    into: KVView | SQLiteView | ViewStore,
    on: Sequence[type[Event]] = (),
    aggregates: Sequence[str] = (),
    subjects: Sequence[str] = (),
    attempts: int = 5,
) -> Callable[[Callable[..., Any]], Projection]:
    """Declare a function as a projection named `name` into `into` (its signature is the store's)."""

    def declare(handle: Callable[..., Any]) -> Projection:
        return Projection(name, handle, into, _selection(on, aggregates, subjects), attempts)

    return declare
