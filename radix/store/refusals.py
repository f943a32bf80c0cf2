"""Refusals: the latest commands an aggregate refused, so that one sent again gets the same answer.

A refused command (rejected by the domain, or a true conflict) leaves nothing in the event
stream, so its answer is recorded here before it is given: a JetStream KV bucket per
namespace (`radix_{ns}_refusals`, key `{ctx}.{Type}.{id}`), one value per aggregate holding
its latest refusals, written by compare-and-set on the key's revision. Reads come from the
bucket's leader. A node that takes an aggregate over from one presumed dead writes the key
once before it answers anything (`fence`): from then on the former owner can record, hence
give, no refusal. Keys expire a day after their last write (refusals matter within the
dedup window, minutes). The in-memory twin of the `RefusalStore` port is in `radix.store.memory`.

The record is one message, so each refusal gets its share of the server's max_payload
(`refusal_budget`), and one larger is cut to it before it is recorded and given (`fitted`):
a reason to its first `MAX_REASON` characters, a conflict's events to the first that fit,
with the count of those left out. A refusal sent again then gets the same answer.
"""

from __future__ import annotations

from typing import Final

import msgspec
from nats.aio.client import Client as NATS

from radix import wire
from radix.errors import KeyChangedError, StoreUnavailableError
from radix.store.kv import KVBucket, NamespaceBuckets
from radix.store.ports import Refusals, RefusalStore
from radix.wire.names import Address, aggregate_key, refusals_bucket

__all__ = [
    "MAX_REASON",
    "REFUSALS_TTL",
    "KVRefusalStore",
    "decode_refusals",
    "encode_refusals",
    "fence",
    "fitted",
    "refusal_budget",
]

#: Seconds a refusal record lives after its last write.
REFUSALS_TTL = 86_400
#: How many times a fence retries when the former owner writes meanwhile.
_FENCE_ATTEMPTS = 5
#: The characters of a refusal's reason that are kept (the rest is cut, and counted).
MAX_REASON = 2_000


class _Record(msgspec.Struct, frozen=True):
    replies: list[wire.Reply] = []


_encoder: Final = msgspec.json.Encoder()
_decoder: Final = msgspec.json.Decoder(_Record)


def encode_refusals(replies: list[wire.Reply]) -> bytes:
    """An aggregate's refusal record as it is stored: JSON."""
    return _encoder.encode(_Record(replies))


def decode_refusals(data: bytes) -> list[wire.Reply]:
    """The refusals of a stored record; none if it is unreadable (written by an incompatible version)."""
    try:
        return _decoder.decode(data).replies
    except msgspec.DecodeError:
        return []


def refusal_budget(max_payload: int, kept: int) -> int:
    """The bytes each refusal may take in a record of the latest `kept` (and in its reply), for a
    server's `max_payload`: an equal share, with room for the record's own framing."""
    return max_payload // (kept + 1)


def fitted(reply: wire.Reply, budget: int) -> wire.Reply:
    """`reply` cut to `budget` bytes, as JSON: its reason to `MAX_REASON` characters, its conflicting
    events to the first that fit (`conflicts_omitted` counts the others). Unchanged if it fits."""
    reason = reply.reason
    if reason is not None and len(reason) > MAX_REASON:
        reason = f"{reason[:MAX_REASON]}… ({len(reason) - MAX_REASON} more characters)"
    if reason == reply.reason and len(_encoder.encode(reply)) <= budget:
        return reply
    # With every event counted as omitted, the count is as long as it gets: room is not overestimated.
    bare = msgspec.structs.replace(reply, reason=reason, conflicts=[], conflicts_omitted=len(reply.conflicts))
    room = budget - len(_encoder.encode(bare)) - len(',"conflicts":[]')
    kept: list[wire.RecordedEvent] = []
    for event in reply.conflicts:
        room -= len(_encoder.encode(event)) + 1
        if room < 0:
            break
        kept.append(event)
    return msgspec.structs.replace(bare, conflicts=kept, conflicts_omitted=len(reply.conflicts) - len(kept))


class KVRefusalStore:
    """A `RefusalStore` on JetStream KV: one bucket per namespace, history 1."""

    def __init__(self, nc: NATS, *, replicas: int = 1, timeout: float = 5.0) -> None:
        self._buckets = NamespaceBuckets(nc, refusals_bucket, replicas=replicas, timeout=timeout)

    async def bucket(self, namespace: str) -> KVBucket:
        """The namespace's refusal bucket, created on first use."""
        return await self._buckets.get(namespace)

    async def load(self, address: Address) -> Refusals:
        """The aggregate's record, as the bucket's leader has it."""
        entry = await (await self.bucket(address.namespace)).get(aggregate_key(address), leader=True)
        return Refusals([] if entry.value is None else decode_refusals(entry.value), entry.revision)

    async def save(self, address: Address, replies: list[wire.Reply], *, revision: int) -> int:
        """Record `replies` if the key is still at `revision`; return the new revision.

        Raises `KeyChangedError` if it is not (another node wrote it: it took the aggregate over).
        """
        bucket = await self.bucket(address.namespace)
        return await bucket.put_if(
            aggregate_key(address), encode_refusals(replies), revision=revision, ttl=REFUSALS_TTL
        )

    async def close(self) -> None:
        """Forget opened buckets. Safe to call twice."""
        self._buckets.close()


async def fence(store: RefusalStore, address: Address) -> Refusals:
    """Write the aggregate's record anew (as it is) and return it with its new revision.

    A node taking the aggregate over does so before answering anything: a write of the
    former owner still in flight then fails, or lands first and is read here.
    """
    for _ in range(_FENCE_ATTEMPTS):
        current = await store.load(address)
        try:
            revision = await store.save(address, current.replies, revision=current.revision)
        except KeyChangedError:
            continue
        return Refusals(current.replies, revision)
    raise StoreUnavailableError(f"the refusals of {address} kept changing while taking them over; retry")
