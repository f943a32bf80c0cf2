"""Reading one owned partition of a reaction or projection: fetch in order, handle, acknowledge; retry,
park and retry parked events (`radix.runtime.processors` says which partitions a node owns)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import nats.errors
from nats.aio.client import Client as NATS

from radix import wire
from radix.client import command_headers, request_command
from radix.domain import BoundedContext, Projection, Reaction, Record, Send, View, encode_command
from radix.domain.processing import Selection, command_id_for
from radix.errors import CheckpointMovedError, RadixError
from radix.observability.logs import logger
from radix.runtime.config import ProcessingConfig
from radix.store.feed import Cursor, Feed
from radix.store.parked import Parked, ParkedStore
from radix.wire.names import Address, command_subject, feed_stream, parse_feed_subject, processor_lease_key

__all__ = ["CommandNotAppliedError", "Partition", "PartitionReader", "Unit", "records", "send_command"]


class CommandNotAppliedError(RadixError):
    """A reaction's command was answered `error`: it is tried again, then parked."""


@dataclass(frozen=True)
class Unit:
    """One partition of one reaction or projection of one namespace's context."""

    namespace: str
    context: BoundedContext
    processor: Reaction | Projection
    partition: int

    @property
    def key(self) -> str:
        return processor_lease_key(self.context.name, self.processor.name, self.partition)

    @property
    def kind(self) -> str:
        return "reaction" if isinstance(self.processor, Reaction) else "projection"


@dataclass
class Partition:
    """One owned partition: its reader, and what it has done."""

    unit: Unit
    epoch: int
    task: asyncio.Task[None] | None = None
    position: int = 0
    handled: int = 0
    lag: int = 0
    parked: int = 0
    held: dict[str, str] = field(default_factory=dict)
    """Aggregates with a parked event here, each with the key of its first parked event."""
    stopping: bool = False
    """Let go: its reader ends at its next fetch (if the cancellation that comes with it is lost)."""


class PartitionReader:
    """Reads the partitions a node owns: one `read` task per owned partition."""

    def __init__(self, nc: NATS, *, feed: Feed, parked: ParkedStore, config: ProcessingConfig) -> None:
        self._nc = nc
        self.feed = feed
        self.parked = parked
        self.config = config

    async def read(self, owned: Partition, view: View | None) -> None:
        """Read and handle one owned partition until cancelled."""
        unit = owned.unit
        start = await view.checkpoint(unit.partition) if view is not None else None
        cursor = await self.feed.take_over(
            unit.namespace, unit.context.name, unit.processor.name, unit.partition, epoch=owned.epoch, start=start
        )
        owned.position = cursor.start
        await self._load_parked(owned)
        looked = 0.0
        try:
            # Not `while True`: a cancellation that lands as a fetch completes can be lost in Python 3.11's
            # `asyncio.wait_for`, so a reader let go also ends on its flag, within one `interval`.
            while not owned.stopping:
                messages = await cursor.fetch(self.config.batch, timeout=self.config.interval)
                if messages:
                    groups = [self._records(unit, m.subject, m.data, m.metadata.sequence.stream) for m in messages]
                    groups = [g for g in groups if g]
                    if view is not None:
                        await self._project(owned, view, groups)
                    else:
                        for group in groups:
                            await self._handle(owned, group, None)
                    await cursor.ack(messages[-1])
                    owned.position = messages[-1].metadata.sequence.stream
                    owned.handled += sum(len(g) for g in groups)
                if time.monotonic() - looked > self.config.interval:
                    looked = time.monotonic()
                    await self._look(owned, cursor, view)
        finally:
            await cursor.close()

    async def _look(self, owned: Partition, cursor: Cursor, view: View | None) -> None:
        """Once an `interval`: the partition's lag, and the parked events marked for a retry. A failure here
        is logged and tried again next time (the reader goes on reading)."""
        try:
            lag = await cursor.pending()
            if lag is not None:
                owned.lag = lag
            await self._retry_parked(owned, view)
        except (RadixError, nats.errors.Error, TimeoutError) as e:
            logger.warning("parked events could not be looked at", processor=owned.unit.processor.name, error=repr(e))

    def _records(self, unit: Unit, subject: str, data: bytes, position: int) -> list[Record[Any]]:
        """The selected events of one feed message, decoded as this code reads them."""
        parsed = parse_feed_subject(subject)
        if parsed is None:
            return []
        _, aggregate_type, aggregate_id = parsed
        return records(unit.namespace, unit.context, unit.processor, aggregate_type, aggregate_id, data, position)

    async def _project(self, owned: Partition, view: View, groups: list[list[Record[Any]]]) -> None:
        """Apply a batch at once; if that fails, commit by commit (the events of one feed message, which the
        checkpoint counts as one), skipping what the checkpoint says was written, so only a failing commit
        is parked."""
        if groups and all(_aggregate(g[0]) not in owned.held for g in groups):
            try:
                await view.apply(owned.unit.partition, [r for g in groups for r in g], owned.unit.processor.handle)
                return
            except CheckpointMovedError:
                raise  # another writer has the partition: end, and read on from what the view holds
            except Exception as e:
                if owned.stopping:
                    raise
                logger.info("projection batch failed; applying one commit at a time", error=repr(e))
        for group in groups:
            await self._handle(owned, group, view)

    async def _handle(self, owned: Partition, group: list[Record[Any]], view: View | None) -> bool:
        """Handle the events of one commit, with retries, or park them; True if they were handled."""
        unit, aggregate = owned.unit, _aggregate(group[0])
        if aggregate in owned.held:
            for record in group:
                await self._park(owned, record, "held back behind an earlier parked event", 0, owned.held[aggregate])
            return False
        delay, error = self.config.retry_delay, ""
        for attempt in range(1, unit.processor.attempts + 1):
            try:
                await self._once(owned, group, view)
                return True
            except (asyncio.CancelledError, CheckpointMovedError):
                raise
            except Exception as e:
                if owned.stopping:
                    raise
                error = str(e) if isinstance(e, RadixError) else repr(e)
                logger.warning(
                    f"{unit.kind} failed on an event",
                    processor=unit.processor.name,
                    on=group[0].name,
                    attempt=attempt,
                    error=error,
                )
                if attempt < unit.processor.attempts:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
        first = await self._park(owned, group[0], error, unit.processor.attempts, None)
        for record in group[1:]:
            await self._park(owned, record, "held back behind an earlier parked event", 0, first.key)
        owned.held[aggregate] = first.key
        return False

    async def _once(self, owned: Partition, group: list[Record[Any]], view: View | None) -> None:
        processor, partition = owned.unit.processor, owned.unit.partition
        if view is not None:
            # A write whose answer was lost may have been stored: the checkpoint says.
            if group[0].position > await view.checkpoint(partition):
                await view.apply(partition, group, processor.handle)
            return
        assert isinstance(processor, Reaction)
        for record in group:
            for index, send in enumerate(processor.handle(record) or ()):
                await self._send(owned.unit, record, index, send)

    async def _send(self, unit: Unit, record: Record[Any], index: int, send: Send) -> None:
        processor, timeout = unit.processor.name, self.config.command_timeout
        reply = await send_command(
            self._nc, unit.namespace, unit.context, processor, record, index, send, timeout=timeout
        )
        if reply.status == wire.ERROR:
            raise CommandNotAppliedError(f"{reply.command_id} answered error: {reply.reason}")

    # -- parked events -----------------------------------------------------------------------------

    async def _park(
        self, owned: Partition, record: Record[Any], error: str, attempts: int, behind: str | None
    ) -> Parked:
        unit = owned.unit
        parked = await self.parked.park(
            unit.namespace,
            context=unit.context.name,
            processor=unit.processor.name,
            partition=unit.partition,
            position=record.position,
            aggregate=_aggregate(record),
            version=record.version,
            type_name=record.type_name,
            error=error,
            attempts=attempts,
            behind=behind,
        )
        owned.parked += 1
        logger.warning(
            f"{unit.kind} parked an event",
            processor=unit.processor.name,
            on=record.name,
            error=error,
            behind=behind,
        )
        return parked

    async def _load_parked(self, owned: Partition) -> None:
        unit = owned.unit
        parked = await self.parked.of(unit.namespace, unit.context.name, unit.processor.name, unit.partition)
        owned.held = {}
        for each in parked:
            owned.held.setdefault(each.aggregate, each.key)
        owned.parked = len(parked)

    async def _retry_parked(self, owned: Partition, view: View | None) -> None:
        """Try again, in order, the parked events marked for a retry; an aggregate goes on once none of its
        events is parked. Skipped ones (removed) let their aggregate go on too."""
        unit = owned.unit
        if not owned.held and not await self.parked.any(unit.namespace, unit.context.name, unit.processor.name):
            return
        parked = await self.parked.of(unit.namespace, unit.context.name, unit.processor.name, unit.partition)
        stuck: set[str] = set()
        for each in parked:
            if not each.retry or each.aggregate in stuck:
                stuck.add(each.aggregate)
                continue
            record = await self._reread(unit, each)
            try:
                if record is None:
                    pass
                elif view is None:
                    await self._once(owned, [record], None)  # its commands' ids make a second try harmless
                elif not await view.was_applied(each.key):
                    await view.apply(unit.partition, [record], unit.processor.handle, parked=each.key)
            except Exception as e:
                stuck.add(each.aggregate)
                logger.warning(f"{unit.kind} retry failed", processor=unit.processor.name, error=repr(e))
                continue
            await self.parked.release(unit.namespace, each)
        await self._load_parked(owned)

    async def _reread(self, unit: Unit, parked: Parked) -> Record[Any] | None:
        msg = await self._nc.jetstream().get_msg(feed_stream(unit.namespace, unit.context.name), parked.position)
        records = self._records(unit, msg.subject or "", msg.data or b"", parked.position)
        return next((r for r in records if r.version == parked.version), None)


def _aggregate(record: Record[Any]) -> str:
    return f"{record.aggregate_type}/{record.aggregate_id}"


def records(
    namespace: str,
    context: BoundedContext,
    processor: Reaction | Projection,
    aggregate_type: str,
    aggregate_id: str,
    data: bytes,
    position: int,
) -> list[Record[Any]]:
    """The events of one stored commit (`data`, at `position`) that `processor` selects, decoded as this
    code reads them (through its upcasters)."""
    codec = context.codecs.get(aggregate_type)
    if codec is None:
        return []
    selection: Selection = processor.on
    found: list[Record[Any]] = []
    for e in wire.commit_decoder.decode(data).events:
        if not selection.matches(aggregate_type, aggregate_id, e.type):
            continue
        event = codec.decode_event(e.type, e.schema, e.data)
        found.append(
            Record(
                namespace,
                context.name,
                aggregate_type,
                aggregate_id,
                e.version,
                event,
                e.command_id,
                e.correlation_id,
                e.issuer,
                e.schema,
                position,
            )
        )
    return found


async def send_command(
    nc: NATS,
    namespace: str,
    context: BoundedContext,
    reaction: str,
    record: Record[Any],
    index: int,
    send: Send,
    *,
    timeout: float,
) -> wire.Reply:
    """Send the `index`-th command `reaction` returned for `record`, with its id derived from the event (the
    same each time, so it applies once), the event as its causation and the causing command's correlation
    id; the aggregate's reply."""
    target = send.context or context
    address = Address(namespace, target.name, target.aggregate_type_of(type(send.command)), send.aggregate_id)
    command_id = command_id_for(reaction, context.name, record, index)
    headers = command_headers(
        command_id, {"correlation_id": record.correlation_id or record.command_id, "issuer": f"reaction:{reaction}"}
    )
    headers[wire.H_CAUSATION_ID] = f"{context.name}/{record.name}"
    response = await request_command(
        nc,
        command_subject(address),
        encode_command(send.command),
        headers,
        timeout=timeout,
        attempt_timeout=min(2.0, timeout),
    )
    return response.reply
