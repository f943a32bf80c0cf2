"""Snapshots: an aggregate's state at a version, so activation replays only the tail.

A snapshot is an optimisation, never the authority: it records the version and the
stream position it covers and a fingerprint of the state's type, and the runtime
ignores one that does not fit (see `radix.runtime`). Two implementations: in memory,
and a JetStream KV bucket per namespace (`radix_{ns}_snapshots`, key `{ctx}.{Type}.{id}`).
"""

from __future__ import annotations

from typing import Protocol

import msgspec
from nats.aio.client import Client as NATS

from radix import wire
from radix.names import Address, snapshots_bucket
from radix.store.kv import KVBucket, NamespaceBuckets, aggregate_key

__all__ = ["InMemorySnapshotStore", "KVSnapshotStore", "Snapshot", "SnapshotStore"]


class Snapshot(msgspec.Struct, frozen=True):
    """An aggregate's state after `version`, which the commit at stream `position` brought it to.

    It also carries what answers a command sent again: the command ids applied within the
    dedup window, as `[command_id, position, version]` (`applied`). When there were more ids
    than it carries, `window_from` is the stream position from which activation reads commits
    to learn the rest (0: none missing), while the snapshot is younger than the dedup window
    (`taken_at`). Refusals have a record of their own (`radix.store.refusals`); `recent` is
    read only from older snapshots.
    """

    version: int
    position: int
    fingerprint: str
    state: msgspec.Raw
    recent: list[wire.Reply] = []
    applied: list[tuple[str, int, int]] = []
    window_from: int = 0
    taken_at: float = 0.0  # wall-clock seconds; 0: unknown (an older snapshot)


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Snapshot)


class SnapshotStore(Protocol):
    """Where snapshots are kept."""

    async def load(self, address: Address) -> Snapshot | None:
        """The latest snapshot of an aggregate, or None (also when it is unreadable)."""
        ...

    async def save(self, address: Address, snapshot: Snapshot) -> None:
        """Keep `snapshot` as the aggregate's latest."""
        ...


class InMemorySnapshotStore:
    """A `SnapshotStore` in this process, for unit tests."""

    def __init__(self) -> None:
        self.snapshots: dict[Address, bytes] = {}

    async def load(self, address: Address) -> Snapshot | None:
        data = self.snapshots.get(address)
        return None if data is None else _decoder.decode(data)

    async def save(self, address: Address, snapshot: Snapshot) -> None:
        self.snapshots[address] = _encoder.encode(snapshot)


class KVSnapshotStore:
    """A `SnapshotStore` on JetStream KV: one bucket per namespace, history 1, direct gets."""

    def __init__(self, nc: NATS, *, replicas: int = 1, timeout: float = 5.0) -> None:
        self._buckets = NamespaceBuckets(nc, snapshots_bucket, replicas=replicas, timeout=timeout)

    async def bucket(self, namespace: str) -> KVBucket:
        """The namespace's snapshot bucket, created on first use."""
        return await self._buckets.get(namespace)

    async def load(self, address: Address) -> Snapshot | None:
        entry = await (await self.bucket(address.namespace)).get(aggregate_key(address))
        if entry.value is None:
            return None
        try:
            return _decoder.decode(entry.value)
        except msgspec.DecodeError:  # written by an incompatible version: replay instead
            return None

    async def save(self, address: Address, snapshot: Snapshot) -> None:
        await (await self.bucket(address.namespace)).put(aggregate_key(address), _encoder.encode(snapshot))

    async def close(self) -> None:
        """Forget opened buckets. Safe to call twice."""
        self._buckets.close()
