"""The store: its ports (`radix.store.ports`) and their adapters, on JetStream and in memory.

One stream per namespace and context holds the events, one subject per aggregate, one message
per commit, every append fenced on the aggregate's last sequence (`JetStreamEventStore`); KV
buckets per namespace hold snapshots, refusal records, event schemas, liveness and leases; a stream per
context holds the command log. Each port has an in-memory twin (`radix.store.memory`) that
passes the same contract tests.
"""

from radix.store.commandlog import CommandLog
from radix.store.commit import DEFAULT_MAX_PAYLOAD, Cause, Commit, Writer
from radix.store.jetstream import JetStreamEventStore, StoreConfig
from radix.store.memory import (
    InMemoryEventStore,
    InMemoryLeaseTable,
    InMemoryPlacement,
    InMemoryRefusalStore,
    InMemorySchemaRegistry,
    InMemorySnapshotStore,
)
from radix.store.placement import KVPlacement
from radix.store.ports import (
    Claim,
    EventStore,
    Owner,
    Placement,
    Refusals,
    RefusalStore,
    SchemaRegistry,
    SnapshotStore,
)
from radix.store.refusals import KVRefusalStore
from radix.store.schemas import KVSchemaRegistry
from radix.store.snapshots import KVSnapshotStore, Snapshot

__all__ = [
    "DEFAULT_MAX_PAYLOAD",
    "Cause",
    "Claim",
    "CommandLog",
    "Commit",
    "EventStore",
    "InMemoryEventStore",
    "InMemoryLeaseTable",
    "InMemoryPlacement",
    "InMemoryRefusalStore",
    "InMemorySchemaRegistry",
    "InMemorySnapshotStore",
    "JetStreamEventStore",
    "KVPlacement",
    "KVRefusalStore",
    "KVSchemaRegistry",
    "KVSnapshotStore",
    "Owner",
    "Placement",
    "RefusalStore",
    "Refusals",
    "SchemaRegistry",
    "Snapshot",
    "SnapshotStore",
    "StoreConfig",
    "Writer",
]
