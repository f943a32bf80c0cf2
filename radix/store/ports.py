"""The store's ports: the small protocols the runtime needs of its storage, each with two adapters.

| port | JetStream adapter | in-memory twin (`radix.store.memory`) |
|---|---|---|
| `EventStore` | `JetStreamEventStore` | `InMemoryEventStore` |
| `SnapshotStore` | `KVSnapshotStore` | `InMemorySnapshotStore` |
| `RefusalStore` | `KVRefusalStore` | `InMemoryRefusalStore` |
| `Placement` | `KVPlacement` | `InMemoryPlacement` |
| `SchemaRegistry` | `KVSchemaRegistry` | `InMemorySchemaRegistry` |

Each pair passes one contract test suite (tests/store/), so a twin behaves as its adapter does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from radix import wire
from radix.domain import EventData
from radix.domain.schemas import EventSchema
from radix.store.commit import Cause, Commit, Writer
from radix.store.snapshots import Snapshot
from radix.wire.control import NodeRecord
from radix.wire.names import Address

__all__ = [
    "Claim",
    "EventStore",
    "Owner",
    "Placement",
    "RefusalStore",
    "Refusals",
    "SchemaRegistry",
    "SnapshotStore",
]


class EventStore(Protocol):
    """Append a command's events to one aggregate, and read them back.

    Versions are assigned by the store: an aggregate's first event is version 1 and
    versions are contiguous. An append is atomic and conditional on the expected version.
    Re-appending the command that made the aggregate's last commit (or one still in the
    server's duplicate window) answers the original commit instead of appending again.
    """

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
        log: Sequence[wire.LogEntry] = (),
    ) -> Commit:
        """Append one command's events atomically if the aggregate is at `expected_version`.

        Raises `VersionConflictError` (with the actual version) when it is not,
        `CommitTooLargeError` when the commit exceeds the server's message size.
        `causes`, one per event, lets one commit hold several commands' events (group
        commit); the first must be `command_id`, which keys the commit for idempotence.
        `writer` (the node and its lease epoch) is stored with the commit, so a history
        shows who wrote each commit under which lease. `log` holds the command-log entries
        of the commands the commit accepts, stored in its body.
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


class SnapshotStore(Protocol):
    """Where snapshots are kept: an optimisation, never the authority."""

    async def load(self, address: Address) -> Snapshot | None:
        """The latest snapshot of an aggregate, or None (also when it is unreadable)."""
        ...

    async def save(self, address: Address, snapshot: Snapshot) -> None:
        """Keep `snapshot` as the aggregate's latest."""
        ...


@dataclass(frozen=True, slots=True)
class Refusals:
    """An aggregate's recorded refusals (oldest first) and the record's revision (0: none yet)."""

    replies: list[wire.Reply]
    revision: int


class RefusalStore(Protocol):
    """Each aggregate's latest refusals, written by compare-and-set (`radix.store.refusals`)."""

    async def load(self, address: Address) -> Refusals:
        """The aggregate's record, as the leader has it (revision 0 and no replies: none yet)."""
        ...

    async def save(self, address: Address, replies: list[wire.Reply], *, revision: int) -> int:
        """Record `replies` if the record is still at `revision`; return the new revision.

        Raises `KeyChangedError` if it is not (another node wrote it: it took the aggregate over).
        """
        ...


class Owner(NamedTuple):
    """Who holds a lease, the lease's revision (the owner's epoch), and whether it is fenced (`LeaseValue`)."""

    node: str
    incarnation: str
    revision: int
    fenced: bool = False


class Claim(NamedTuple):
    """A lease as claimed: its epoch (the lease key's revision), and whether it was taken over from an
    owner presumed dead (which may still be writing) rather than found free or handed over."""

    epoch: int
    taken_over: bool


class Placement(Protocol):
    """Membership and ownership leases of one namespace, as one node sees them (docs/placement.md).

    A node registers a liveness record under an incarnation; a lease names the node and
    incarnation that own it, and its revision is the owner's epoch. Leases of a node whose
    liveness is gone may be taken over.
    """

    @property
    def node_id(self) -> str: ...

    @property
    def incarnation(self) -> str:
        """This node's current incarnation: a fresh id each time it registers."""
        ...

    async def register(self) -> None:
        """Register this node as live (waiting out an earlier incarnation's record)."""
        ...

    async def deregister(self) -> None:
        """Leave: remove this node's liveness record. Its leases may then be taken over."""
        ...

    def liveness_fresh(self) -> bool:
        """Whether this node's liveness was confirmed recently enough that it cannot have expired yet."""
        ...

    def owner(self, key: str) -> Owner | None:
        """The owner of a lease as last seen (it may lag by a moment)."""
        ...

    async def read(self, key: str, *, leader: bool = False) -> Owner | None:
        """The owner of a lease, read afresh (from the leader with `leader`: never stale)."""
        ...

    def is_me(self, owner: Owner) -> bool:
        """Whether `owner` is this node in its current incarnation."""
        ...

    def mine(self) -> dict[str, Owner]:
        """The leases held by this node in its current incarnation, as last seen (handovers to it included)."""
        ...

    async def acquire(self, key: str) -> Claim:
        """Claim the lease, or take it over from an owner whose liveness is gone.

        Raises `LeaseHeldError` naming the owner if another live node holds it.
        """
        ...

    async def transfer(self, key: str, epoch: int, to: NodeRecord, *, fenced: bool = False) -> int:
        """Hand the lease held at `epoch` to another node (still `fenced`, if it was); return the new revision.

        Raises `KeyChangedError` if the lease changed since `epoch`.
        """
        ...

    async def release(self, key: str, epoch: int) -> None:
        """Give the lease up, unless it changed since `epoch`."""
        ...


class SchemaRegistry(Protocol):
    """Each namespace's event schemas, one entry per (context, type, major, minor), never changed once written."""

    async def schemas(self, namespace: str, context: str | None = None) -> list[EventSchema]:
        """What is registered in the namespace (for one context, or all), in key order."""
        ...

    async def add(self, namespace: str, schema: EventSchema) -> EventSchema | None:
        """Register `schema` unless its version is registered already: None if it was added, else what is."""
        ...

    async def withdraw(self, namespace: str, schema: EventSchema) -> None:
        """Remove `schema` if the registry holds exactly it (same shape, node and time): a registration
        undone by the node that made it, because another node registered a version it conflicts with."""
        ...
