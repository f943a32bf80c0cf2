"""Snapshots: an aggregate's state at a version, so activation replays only the tail.

A snapshot is an optimisation, never the authority: it records the version and the
stream position it covers and a fingerprint of the state's type, and the runtime
ignores one that does not fit (see `radix.runtime.history`). Two implementations of the
`SnapshotStore` port: in memory (`radix.store.memory`), and a JetStream KV bucket per namespace
(`radix_{ns}_snapshots`, key `{ctx}.{Type}.{id}`), here.
"""

from __future__ import annotations

from typing import Final

import msgspec
from nats.aio.client import Client as NATS

from radix import wire
from radix.store.kv import KVBucket, NamespaceBuckets
from radix.wire.names import Address, aggregate_key, snapshots_bucket

__all__ = ["KVSnapshotStore", "Snapshot", "decode_snapshot", "encode_snapshot"]


class Snapshot(msgspec.Struct, frozen=True):
    """An aggregate's state after `version`, which the commit at stream `position` brought it to.

    It also carries what answers a command sent again: the command ids applied within the
    dedup window, as `[command_id, position, version]` (`applied`). When there were more ids
    than it carries, `window_from` is the stream position from which activation reads commits
    to learn the rest (0: none missing), while the snapshot is younger than the dedup window
    (`taken_at`). Refusals have a record of their own (`radix.store.refusals`); `recent` is
    read only from older snapshots.

    `holds` names every event type and schema version (`[type, "major.minor"]`) in the history
    it covers, so that code which cannot read all of them does not take the state for it and
    write after events it cannot read. None: an older snapshot, which is not used (the history
    is replayed instead, and checked event by event).
    """

    version: int
    position: int
    fingerprint: str
    state: msgspec.Raw
    recent: list[wire.Reply] = []
    applied: list[tuple[str, int, int]] = []
    window_from: int = 0
    taken_at: float = 0.0  # wall-clock seconds; 0: unknown (an older snapshot)
    holds: list[tuple[str, str]] | None = None


_encoder: Final = msgspec.json.Encoder()
_decoder: Final = msgspec.json.Decoder(Snapshot)


def encode_snapshot(snapshot: Snapshot) -> bytes:
    """A snapshot as it is stored: JSON."""
    return _encoder.encode(snapshot)


def decode_snapshot(data: bytes) -> Snapshot | None:
    """A stored snapshot, or None if it is unreadable (written by an incompatible version: replay instead)."""
    try:
        return _decoder.decode(data)
    except msgspec.DecodeError:
        return None


class KVSnapshotStore:
    """A `SnapshotStore` on JetStream KV: one bucket per namespace, history 1, direct gets."""

    def __init__(self, nc: NATS, *, replicas: int = 1, timeout: float = 5.0) -> None:
        self._buckets = NamespaceBuckets(nc, snapshots_bucket, replicas=replicas, timeout=timeout)

    async def bucket(self, namespace: str) -> KVBucket:
        """The namespace's snapshot bucket, created on first use."""
        return await self._buckets.get(namespace)

    async def load(self, address: Address) -> Snapshot | None:
        entry = await (await self.bucket(address.namespace)).get(aggregate_key(address))
        return None if entry.value is None else decode_snapshot(entry.value)

    async def save(self, address: Address, snapshot: Snapshot) -> None:
        await (await self.bucket(address.namespace)).put(aggregate_key(address), encode_snapshot(snapshot))

    async def close(self) -> None:
        """Forget opened buckets. Safe to call twice."""
        self._buckets.close()
