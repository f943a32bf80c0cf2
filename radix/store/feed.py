"""The feed: each context's events, copied by JetStream into partitions, for its reactions and projections.

A stream per namespace and context (`radix_{ns}_{ctx}_feed`) sources the events stream through a
subject transform that puts a partition token first (`radix.{ns}.{ctx}.feed.{p}.{Type}.{id}`,
`p` the server's hash of the aggregate's type and id): every event of one aggregate is in one
partition, in the order of its stream. Each partition of each reaction or projection is read by
one node at a time (the one holding its lease) through a durable consumer named for that lease's
epoch (`Cursor`). A new owner reads where the last one's consumer had its acknowledgements up to,
removes that consumer (so a former owner still pulling from it gets nothing more), and reads on
with a consumer of its own: delivery is at least once and in order per partition.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import api as js_api
from nats.js import errors as js_errors
from nats.js.client import JetStreamContext

from radix.errors import StoreError
from radix.observability.logs import logger
from radix.store.streams import ensure_stream
from radix.wire.names import (
    events_stream,
    feed_filter,
    feed_stream,
    feed_transform,
    processor_consumer,
    processor_consumer_prefix,
)

__all__ = ["Cursor", "Feed"]


@dataclass
class Cursor:
    """One owner's read of one partition of a processor: fetch, acknowledge, and how far behind it is."""

    stream: str
    consumer: str
    start: int
    """The feed position it started after the last acknowledged one (or the projection's checkpoint)."""
    _sub: JetStreamContext.PullSubscription
    _js: JetStreamContext
    timeout: float
    """Seconds an acknowledgement or a look at the lag may take."""
    delivered: int = 0
    """The last feed position handed out: a message at or before it is a redelivery, and dropped."""

    def __post_init__(self) -> None:
        self.delivered = self.start

    async def fetch(self, batch: int, timeout: float) -> list[Msg]:
        """Up to `batch` messages after the last handed out, waiting at most `timeout` for the first; none
        if none came.

        The first is fetched alone, so that it is handed on the moment it comes; then as many more as it
        says are pending (at most `batch`), which are there to take at once: a fetch of more than are
        waiting would wait out its time-out for the rest. A message JetStream delivers again (its
        acknowledgement was lost and its `ack_wait` ran out) was handled already: it is left out."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                messages = await self._sub.fetch(1, timeout=left)
            except nats.errors.TimeoutError:
                return []
            pending = int(messages[-1].metadata.num_pending or 0)
            if pending and batch > 1:
                with contextlib.suppress(nats.errors.TimeoutError):
                    messages += await self._sub.fetch(min(batch - 1, pending), timeout=timeout)
            fresh = [m for m in messages if m.metadata.sequence.stream > self.delivered]
            if fresh:
                self.delivered = fresh[-1].metadata.sequence.stream
                return fresh
            await self.ack(messages[-1])  # handled before: acknowledged now, or it comes back again and again
        return []

    async def ack(self, message: Msg) -> None:
        """Acknowledge `message` and every one before it (AckPolicy.ALL), waiting for the server to take it.
        An acknowledgement not answered in time is let be: the next one covers it, and what it would
        have covered and is delivered again is left out by `fetch`."""
        try:
            await message.ack_sync(timeout=self.timeout)
        except nats.errors.TimeoutError:
            logger.info("feed acknowledgement not answered in time; the next one covers it", consumer=self.consumer)

    async def pending(self) -> int | None:
        """How many messages of the partition are not yet handled by it (its lag); None if JetStream did
        not say in time."""
        try:
            info = await self._js.consumer_info(self.stream, self.consumer)
        except (nats.errors.TimeoutError, js_errors.ServiceUnavailableError) as e:
            logger.info("the lag of a feed partition could not be read", consumer=self.consumer, error=repr(e))
            return None
        return int(info.num_pending or 0) + int(info.num_ack_pending or 0)

    async def close(self) -> None:
        """Stop reading; the consumer stays, with its acknowledgements, for the next owner."""
        try:
            await self._sub.unsubscribe()
        except Exception as e:  # a closed connection: nothing to undo
            logger.debug("feed cursor not unsubscribed", error=repr(e))


class Feed:
    """Creates the feed streams and the consumers of their partitions."""

    def __init__(self, nc: NATS, *, partitions: int, replicas: int, timeout: float, ack_wait: float = 60.0) -> None:
        self._nc = nc
        self._timeout = timeout
        self._ack_wait = ack_wait
        self._js = nc.jetstream(timeout=timeout)
        self.partitions = partitions
        self._replicas = replicas
        self._ensured: dict[tuple[str, str], asyncio.Future[str]] = {}

    async def ensure(self, namespace: str, context: str) -> str:
        """Create the context's feed unless it exists (with as many partitions); return its name."""
        name = feed_stream(namespace, context)
        source, dest = feed_transform(namespace, context, self.partitions)
        config = js_api.StreamConfig(
            name=name,
            description=f"Radix feed of context {context!r} in namespace {namespace!r}: its events, partitioned",
            subjects=[],
            sources=[
                js_api.StreamSource(
                    name=events_stream(namespace, context),
                    subject_transforms=[js_api.SubjectTransform(src=source, dest=dest)],
                )
            ],
            storage=js_api.StorageType.FILE,
            num_replicas=self._replicas,
            retention=js_api.RetentionPolicy.LIMITS,
            allow_direct=True,
        )
        info = await ensure_stream(self._js, config)
        found = [t.dest for s in info.config.sources or [] for t in s.subject_transforms or []]
        if found != [dest]:
            raise StoreError(
                f"stream {name} exists with another partitioning ({found}, not {dest}): the number of "
                "partitions is fixed once the feed exists; keep it, or remove the stream (its projections "
                "are then rebuilt)"
            )
        return name

    async def take_over(
        self, namespace: str, context: str, processor: str, partition: int, *, epoch: int, start: int | None
    ) -> Cursor:
        """Read one partition of a processor as the owner at `epoch`: from after `start` if given (a
        projection's checkpoint), else from after the last position a former owner acknowledged."""
        stream = feed_stream(namespace, context)
        prefix = processor_consumer_prefix(processor, partition)
        former = [c for c in await self._js.consumers_info(stream) if (c.name or "").startswith(prefix)]
        acknowledged = max((int(c.ack_floor.stream_seq or 0) for c in former if c.ack_floor), default=0)
        begin = acknowledged if start is None else start
        for consumer in former:
            with contextlib.suppress(js_errors.NotFoundError):
                await self._js.delete_consumer(stream, consumer.name or "")
        name = processor_consumer(processor, partition, epoch)
        config = js_api.ConsumerConfig(
            durable_name=name,
            filter_subject=feed_filter(namespace, context, partition),
            ack_policy=js_api.AckPolicy.ALL,
            deliver_policy=js_api.DeliverPolicy.BY_START_SEQUENCE if begin else js_api.DeliverPolicy.ALL,
            opt_start_seq=begin + 1 if begin else None,
            ack_wait=self._ack_wait,
            max_ack_pending=1024,
            num_replicas=self._replicas,
        )
        await self._js.add_consumer(stream, config)
        sub = await self._js.pull_subscribe_bind(name, stream=stream)
        return Cursor(stream, name, begin, sub, self._js, self._timeout)
