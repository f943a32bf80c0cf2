"""In-memory twins of the store's ports, for fast unit tests (Radix's own and users').

Each follows the rules of its JetStream adapter exactly (one contract test suite runs
against both, tests/store/): the event store's positions per (namespace, context) stream
and its duplicate window keyed by command id, the refusal record's compare-and-set on a
revision, and the leases' claim, takeover, handover and release. Only durability differs.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict
from collections.abc import Sequence

from radix import wire
from radix.domain import EventData
from radix.domain.schemas import EventSchema
from radix.errors import KeyChangedError, LeaseHeldError, RadixError, VersionConflictError
from radix.store.commit import DEFAULT_MAX_PAYLOAD, Cause, Commit, Writer, prepare_commit
from radix.store.placement import new_incarnation
from radix.store.ports import Claim, Owner, Refusals
from radix.store.refusals import decode_refusals, encode_refusals
from radix.store.schemas import decode_schema, encode_schema, registered_as, selected
from radix.store.snapshots import Snapshot, decode_snapshot, encode_snapshot
from radix.wire.control import NodeRecord
from radix.wire.names import Address

__all__ = [
    "InMemoryEventStore",
    "InMemoryLeaseTable",
    "InMemoryPlacement",
    "InMemoryRefusalStore",
    "InMemorySchemaRegistry",
    "InMemorySnapshotStore",
]


class InMemoryEventStore:
    """An `EventStore` that keeps everything in this process."""

    def __init__(self, *, max_payload: int = DEFAULT_MAX_PAYLOAD) -> None:
        self.max_payload = max_payload
        self._commits: dict[Address, list[Commit]] = defaultdict(list)
        self._by_command: dict[tuple[Address, str], Commit] = {}
        self._positions: dict[tuple[str, str], int] = defaultdict(int)

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
        await asyncio.sleep(0)  # yield as a round trip would, so concurrent callers interleave
        prepared = prepare_commit(
            address,
            events,
            expected_version=expected_version,
            command_id=command_id,
            correlation_id=correlation_id,
            issuer=issuer,
            max_payload=self.max_payload,
            causes=causes,
            writer=writer,
            log=log,
        )
        commits = self._commits[address]
        last = commits[-1] if commits else None
        actual = last.version if last else 0
        if actual != expected_version:
            # As on JetStream, the version check comes before deduplication: a retry
            # is recognised here only if it made the last commit.
            if last is not None and last.command_id == command_id:
                return last
            raise VersionConflictError(str(address), expected=expected_version, actual=actual)
        original = self._by_command.get((address, command_id))
        if original is not None:
            return original
        stream = (address.namespace, address.context)
        self._positions[stream] += 1
        commit = Commit(address, self._positions[stream], prepared.events, writer)
        commits.append(commit)
        self._by_command[(address, command_id)] = commit
        return commit

    async def read(self, address: Address, *, after: int = 0, start: int = 0, leader: bool = False) -> list[Commit]:
        return [c.after(after) for c in self._commits.get(address, ()) if c.version > after and c.position >= start]

    async def version(self, address: Address) -> int:
        await asyncio.sleep(0)
        commits = self._commits.get(address)
        return commits[-1].version if commits else 0

    async def commit_at(self, address: Address, position: int) -> Commit | None:
        await asyncio.sleep(0)
        return next((c for c in self._commits.get(address, ()) if c.position == position), None)

    async def head(self, address: Address) -> int:
        await asyncio.sleep(0)
        commits = self._commits.get(address)
        return commits[-1].position if commits else 0


class InMemorySnapshotStore:
    """A `SnapshotStore` in this process; snapshots are kept encoded, as the KV bucket keeps them."""

    def __init__(self) -> None:
        self.snapshots: dict[Address, bytes] = {}

    async def load(self, address: Address) -> Snapshot | None:
        data = self.snapshots.get(address)
        return None if data is None else decode_snapshot(data)

    async def save(self, address: Address, snapshot: Snapshot) -> None:
        self.snapshots[address] = encode_snapshot(snapshot)


class InMemorySchemaRegistry:
    """A `SchemaRegistry` in this process; schemas are kept encoded, as the KV bucket keeps them."""

    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], bytes] = {}  # (namespace, key) -> the stored record

    async def schemas(self, namespace: str, context: str | None = None) -> list[EventSchema]:
        await asyncio.sleep(0)
        return selected((v for (ns, _), v in self.entries.items() if ns == namespace), context)

    async def add(self, namespace: str, schema: EventSchema) -> EventSchema | None:
        await asyncio.sleep(0)
        there = self.entries.get((namespace, schema.key))
        if there is not None:
            return registered_as("the in-memory registry", schema.key, there)
        self.entries[(namespace, schema.key)] = encode_schema(schema)
        return None

    async def withdraw(self, namespace: str, schema: EventSchema) -> None:
        await asyncio.sleep(0)
        there = self.entries.get((namespace, schema.key))
        if there is not None and decode_schema(there) == schema:
            del self.entries[(namespace, schema.key)]


class InMemoryRefusalStore:
    """A `RefusalStore` in this process: one record per aggregate, written by compare-and-set."""

    def __init__(self) -> None:
        self._records: dict[Address, tuple[bytes, int]] = {}
        self._revisions = itertools.count(1)

    async def load(self, address: Address) -> Refusals:
        await asyncio.sleep(0)
        data, revision = self._records.get(address, (b"", 0))
        return Refusals(decode_refusals(data) if data else [], revision)

    async def save(self, address: Address, replies: list[wire.Reply], *, revision: int) -> int:
        await asyncio.sleep(0)
        current = self._records.get(address, (b"", 0))[1]
        if current != revision:
            raise KeyChangedError(str(address), current)
        new = next(self._revisions)
        self._records[address] = (encode_refusals(replies), new)
        return new


class InMemoryLeaseTable:
    """The membership and leases of one namespace in this process, shared by the `InMemoryPlacement` of
    each node: the twin of the namespace's two KV buckets. Revisions count up across both, as a
    stream's sequence does."""

    def __init__(self) -> None:
        self.nodes: dict[str, str] = {}  # node id -> incarnation of its live registration
        self.leases: dict[str, Owner] = {}
        self.revision = 0  # the latest write's: a test sees that something wrote nothing

    def next_revision(self) -> int:
        self.revision += 1
        return self.revision

    def is_live(self, node: str, incarnation: str) -> bool:
        return self.nodes.get(node) == incarnation


class InMemoryPlacement:
    """A `Placement` on an `InMemoryLeaseTable`: one node's view, always current."""

    def __init__(self, table: InMemoryLeaseTable, node_id: str, contexts: Sequence[str] = ()) -> None:
        self.table = table
        self.node_id = node_id
        self.contexts = list(contexts)
        self.incarnation = new_incarnation()

    @property
    def record(self) -> NodeRecord:
        return NodeRecord(self.node_id, self.incarnation, self.contexts, wire.timestamp())

    async def register(self) -> None:
        await asyncio.sleep(0)
        if self.node_id in self.table.nodes:
            raise RadixError(f"node id {self.node_id!r} is in use by a live node; give this node another id")
        self.table.nodes[self.node_id] = self.incarnation

    async def deregister(self) -> None:
        await asyncio.sleep(0)
        if self.table.nodes.get(self.node_id) == self.incarnation:
            del self.table.nodes[self.node_id]

    def liveness_fresh(self) -> bool:
        return self.table.is_live(self.node_id, self.incarnation)

    def owner(self, key: str) -> Owner | None:
        return self.table.leases.get(key)

    async def read(self, key: str, *, leader: bool = False) -> Owner | None:
        await asyncio.sleep(0)
        return self.table.leases.get(key)

    def is_me(self, owner: Owner) -> bool:
        return owner.node == self.node_id and owner.incarnation == self.incarnation

    def mine(self) -> dict[str, Owner]:
        return {key: owner for key, owner in self.table.leases.items() if self.is_me(owner)}

    async def acquire(self, key: str) -> Claim:
        await asyncio.sleep(0)
        owner = self.table.leases.get(key)
        if owner is not None and self.is_me(owner):
            return Claim(owner.revision, taken_over=owner.fenced)
        if owner is not None and self.table.is_live(owner.node, owner.incarnation):
            raise LeaseHeldError(key, node=owner.node, incarnation=owner.incarnation, revision=owner.revision)
        revision = self.table.next_revision()
        self.table.leases[key] = Owner(self.node_id, self.incarnation, revision, fenced=owner is not None)
        return Claim(revision, taken_over=owner is not None)

    async def transfer(self, key: str, epoch: int, to: NodeRecord, *, fenced: bool = False) -> int:
        await asyncio.sleep(0)
        self._expect(key, epoch)
        revision = self.table.next_revision()
        self.table.leases[key] = Owner(to.node, to.incarnation, revision, fenced)
        return revision

    async def release(self, key: str, epoch: int) -> None:
        await asyncio.sleep(0)
        owner = self.table.leases.get(key)
        if owner is not None and owner.revision == epoch:
            del self.table.leases[key]
            self.table.next_revision()  # a delete takes a revision, as a KV delete marker does

    def _expect(self, key: str, epoch: int) -> None:
        owner = self.table.leases.get(key)
        current = owner.revision if owner is not None else 0
        if current != epoch:
            raise KeyChangedError(key, current)
