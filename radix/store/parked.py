"""Parked events: those a reaction or projection gave up on, kept with the error until retried or skipped.

One KV bucket per namespace (`radix_{ns}_parked`), one key per parked event
(`{ctx}.{processor}.{position}.{version}`). While an aggregate has a parked event in a processor, the
processor's later events of that aggregate are parked behind it (in order), and the rest of the
feed goes on. `radix reaction retry|skip` (and `projection`) mark or remove entries; the partition's
owner retries what is marked, in order, and lets the aggregate go on once nothing of it is parked.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence

import msgspec
from nats.aio.client import Client as NATS

from radix.errors import KeyChangedError
from radix.store.kv import KVBucket, NamespaceBuckets
from radix.wire import timestamp
from radix.wire.names import kv_subject, parked_bucket, parked_key

__all__ = ["Parked", "ParkedStore"]


class Parked(msgspec.Struct, frozen=True, omit_defaults=True):
    """A parked event: where it is in the feed, whose it is, why it was parked."""

    context: str
    processor: str
    partition: int
    position: int
    aggregate: str
    """`{Type}/{id}`."""
    version: int
    type: str
    error: str
    attempts: int
    at: str
    behind: str | None = None
    """Parked only because an earlier event of its aggregate is (that event's key)."""
    retry: bool = False
    """Asked to be tried again."""

    @property
    def key(self) -> str:
        return f"{parked_key(self.context, self.processor, self.position)}.{self.version}"


_decoder = msgspec.json.Decoder(Parked)


class ParkedStore:
    """Reads and writes parked events, one bucket per namespace."""

    def __init__(self, nc: NATS, *, replicas: int = 1, timeout: float = 5.0, remember_for: float = 0.0) -> None:
        self._nc = nc
        self._buckets = NamespaceBuckets(nc, parked_bucket, replicas=replicas, timeout=timeout)
        self._timeout = timeout
        # `any`'s answers, kept for `remember_for` seconds: every partition of a processor asks once an
        # interval, and one request answers them all.
        self._remember_for = remember_for
        self._answers: dict[tuple[str, str, str], tuple[float, bool]] = {}

    async def park(
        self,
        namespace: str,
        *,
        context: str,
        processor: str,
        partition: int,
        position: int,
        aggregate: str,
        version: int,
        type_name: str,
        error: str,
        attempts: int,
        behind: str | None = None,
    ) -> Parked:
        parked = Parked(
            context, processor, partition, position, aggregate, version, type_name, error, attempts, timestamp(), behind
        )
        await (await self._buckets.get(namespace)).put(parked.key, msgspec.json.encode(parked))
        self._answers[(namespace, context, processor)] = (time.monotonic(), True)
        return parked

    async def of(self, namespace: str, context: str, processor: str, partition: int | None = None) -> list[Parked]:
        """The events parked by one processor (of one partition), in feed order."""
        bucket = await self._buckets.get(namespace)
        prefix = f"{context}.{processor}."
        found = [
            _decoder.decode(e.value)
            for e in await bucket.entries(timeout=self._timeout)
            if e.value is not None and e.key.startswith(prefix)
        ]
        return sorted(
            (p for p in found if partition is None or p.partition == partition), key=lambda p: (p.position, p.version)
        )

    async def any(self, namespace: str, context: str, processor: str) -> bool:
        """Whether the processor has parked events: one request, no consumer (what a partition's owner
        asks once a second before it looks for events to retry), answered again from memory for
        `remember_for` seconds (events parked here meanwhile count at once)."""
        where, now = (namespace, context, processor), time.monotonic()
        known = self._answers.get(where)
        if known is not None and now - known[0] < self._remember_for:
            return known[1]
        bucket = await self._buckets.get(namespace)
        js = self._nc.jetstream(timeout=self._timeout)
        info = await js.stream_info(bucket.stream, subjects_filter=kv_subject(bucket.name, f"{context}.{processor}.>"))
        found = bool(info.state.subjects)
        self._answers[where] = (now, found)
        return found

    async def mark(self, namespace: str, parked: Sequence[Parked], *, retry: bool) -> None:
        """Ask for `parked` to be tried again (`retry`), or remove it (skip: its events are not handled)."""
        bucket = await self._buckets.get(namespace)
        for each in parked:
            if retry:
                await bucket.put(each.key, msgspec.json.encode(msgspec.structs.replace(each, retry=True)))
            else:
                await self._remove(bucket, each.key)

    async def release(self, namespace: str, parked: Parked) -> None:
        """Remove an event that was handled after all."""
        await self._remove(await self._buckets.get(namespace), parked.key)

    async def _remove(self, bucket: KVBucket, key: str) -> None:
        entry = await bucket.get(key, leader=True)
        if entry.value is not None:
            with contextlib.suppress(KeyChangedError):  # changed meanwhile: parked again, keep it
                await bucket.delete_if(key, revision=entry.revision)

    # -- a projection paused for a reset ---------------------------------------------------------

    async def pause(self, namespace: str, context: str, processor: str) -> None:
        """Ask every node to let go of the processor's partitions and claim none (`radix projection reset`)."""
        await (await self._buckets.get(namespace)).put(_pause_key(context, processor), timestamp().encode())

    async def paused(self, namespace: str, context: str, processor: str) -> bool:
        entry = await (await self._buckets.get(namespace)).get(_pause_key(context, processor), leader=True)
        return entry.value is not None

    async def resume(self, namespace: str, context: str, processor: str) -> None:
        await self._remove(await self._buckets.get(namespace), _pause_key(context, processor))

    async def close(self) -> None:
        self._buckets.close()


def _pause_key(context: str, processor: str) -> str:
    """Beside the parked events, under a prefix no context has (`_`), so `of` never lists it."""
    return f"_paused.{context}.{processor}"
