"""`radix bench` on the read side: a reaction's latency and a projection's catch-up, each beside a raw
JetStream baseline measured in the same run (docs/benchmarks.md).

- reaction: from an event stored to the command a reaction sent for it stored; the baseline is a
  durable pull consumer on the events stream that publishes, for each event, a message into a stream
  of its own (the least a JetStream "reaction" does);
- projection: the events per second a `KVView` projection (8 partitions, one node) catches up on a
  history already stored, from the node's start to the last event applied; the baseline is an ordered
  consumer replaying the same events stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import nats
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.js import api as js_api

from radix.client import Client
from radix.domain import BoundedContext
from radix.examples import restock
from radix.examples.inventory import CheckIn, CreateItem, InventoryItem, ItemCreated, ItemsCheckedIn, Remove, inventory
from radix.runtime.config import NodeConfig, ProcessingConfig
from radix.runtime.node import Node
from radix.store.feed import Feed
from radix.store.jetstream import JetStreamEventStore
from radix.store.views import open_view
from radix.testing.conditions import eventually
from radix.wire.names import Address, context_filter, event_subject, events_stream, feed_filter

__all__ = ["projection_catch_up", "reaction_latency"]

#: Partitions of the feed the projection reads.
PARTITIONS = 8


@contextlib.asynccontextmanager
async def _node(url: str, namespace: str, context: BoundedContext) -> AsyncIterator[Node]:
    nc = await nats.connect(url, pending_size=64 * 1024 * 1024)
    processing = ProcessingConfig(partitions=PARTITIONS, interval=0.2)
    config = NodeConfig(node_id=f"read-{namespace[-6:]}", processing=processing)
    try:
        async with Node({namespace: [context]}, nats=nc, config=config) as node:
            yield node
    finally:
        await nc.close()


async def reaction_latency(url: str, namespace: Callable[[str], str], count: int) -> dict[str, Any]:
    """Per event: stored -> the reaction's command stored, for `count` events one after another; and the
    raw baseline. Seconds, as lists."""
    ns = namespace("reaction")
    address = Address(ns, "inventory", "InventoryItem", "r-1")
    radix: list[float] = []
    async with _node(url, ns, restock.inventory), _connection(url) as nc:
        client = Client(nc, inventory, namespace=ns)
        await client.send(CreateItem(name="r"), aggregate_id="r-1")
        await client.send(CheckIn(count=10 * count), aggregate_id="r-1")
        arrivals: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def seen(msg: Any) -> None:
            arrivals.put_nowait((time.perf_counter(), msg.data))

        sub = await nc.subscribe(event_subject(address), cb=seen)
        for n in range(count + 1):  # the first is not measured: its partition's reader is still starting
            await client.send(Remove(count=restock.LARGE), aggregate_id="r-1")
            removed_at, _ = await asyncio.wait_for(arrivals.get(), 10)
            checked_in_at, data = await asyncio.wait_for(arrivals.get(), 10)
            assert b"ItemsCheckedIn" in data
            if n:
                radix.append(checked_in_at - removed_at)
        await sub.unsubscribe()
    return {"radix": radix, "baseline": await _raw_reaction(url, namespace("reaction-raw"), count)}


async def _raw_reaction(url: str, ns: str, count: int) -> list[float]:
    """A durable pull consumer on an events stream that publishes a message per event into a stream."""
    latencies: list[float] = []
    data = inventory.codec("InventoryItem").encode_event(ItemsCheckedIn(count=1))
    async with _connection(url) as nc, JetStreamEventStore(nc) as store:
        js = nc.jetstream()
        address = Address(ns, "inventory", "InventoryItem", "raw-1")
        await store.ensure_stream(ns, "inventory")
        out = f"bench.{ns}.out"
        await js.add_stream(js_api.StreamConfig(name=f"bench_{ns}_out", subjects=[out]))
        pull = await js.pull_subscribe(
            context_filter(ns, "inventory", "evt"), durable="raw", stream=events_stream(ns, "inventory")
        )
        arrivals: asyncio.Queue[float] = asyncio.Queue()
        stored: asyncio.Queue[float] = asyncio.Queue()

        async def on_out(msg: Any) -> None:
            arrivals.put_nowait(time.perf_counter())

        async def on_event(msg: Any) -> None:
            stored.put_nowait(time.perf_counter())

        await nc.subscribe(out, cb=on_out)
        await nc.subscribe(event_subject(address), cb=on_event)

        done = asyncio.Event()

        async def react() -> None:
            # Ends on `done` too: in Python 3.11 a cancellation that meets a fetch's time-out (a
            # `wait_for` finishing) can be lost, and this loop would then run for good.
            while not done.is_set():
                with contextlib.suppress(nats.errors.TimeoutError):
                    for msg in await pull.fetch(1, timeout=1):
                        await js.publish(out, msg.data)
                        await msg.ack()

        reacting = asyncio.create_task(react())
        try:
            for version in range(count):
                await store.append(address, [data], expected_version=version, command_id=f"raw-{version}")
                at = await asyncio.wait_for(stored.get(), 10)
                latencies.append(await asyncio.wait_for(arrivals.get(), 10) - at)
        finally:
            done.set()
            reacting.cancel()
            await asyncio.gather(reacting, return_exceptions=True)
    return latencies


async def projection_catch_up(url: str, namespace: Callable[[str], str], events: int) -> dict[str, float]:
    """Events per second: a KV projection catching up on `events` stored ones, and an ordered consumer."""
    ns = namespace("projection")
    aggregates = 100
    per = max(1, events // aggregates)
    codec = inventory.codec("InventoryItem")
    created, checked_in = codec.encode_event(ItemCreated(name="p")), codec.encode_event(ItemsCheckedIn(count=1))
    async with _connection(url) as nc:
        async with JetStreamEventStore(nc) as store:
            for a in range(aggregates):
                address = Address(ns, "inventory", "InventoryItem", f"p-{a}")
                for version in range(per):
                    data = created if version == 0 else checked_in
                    await store.append(address, [data], expected_version=version, command_id=f"p-{a}-{version}")
        total = aggregates * per
        replayed = await _replay(nc, ns, total)
        baseline = total / (time.perf_counter() - replayed)
        ends = await _partition_ends(nc, ns, total)
        context = BoundedContext("inventory", [InventoryItem()], projections=[restock.stock])
        view = await open_view(restock.stock.into, ns, "inventory", restock.stock.name, nc)
        try:
            began = time.perf_counter()
            async with _node(url, ns, context):

                async def caught_up() -> bool:
                    return all([await view.checkpoint(p) >= end for p, end in ends.items()])

                await eventually(caught_up, timeout=600, what="the projection caught up")
                seconds = time.perf_counter() - began
        finally:
            await view.close()
    return {"radix": total / seconds, "baseline": baseline, "events": total}


async def _partition_ends(nc: NATS, ns: str, total: int) -> dict[int, int]:
    """Fill the feed (as a node would create it) and return each partition's last position: a projection
    has caught up once its checkpoint reaches them all (however often its readers started over)."""
    feed = Feed(nc, partitions=PARTITIONS, replicas=1, timeout=5.0)
    name = await feed.ensure(ns, "inventory")
    js = nc.jetstream()

    async def filled() -> bool:
        return (await js.stream_info(name)).state.messages >= total

    await eventually(filled, timeout=120, what="the feed holding every event")
    ends: dict[int, int] = {}
    for p in range(PARTITIONS):
        with contextlib.suppress(nats.js.errors.NotFoundError):
            last = await js.get_last_msg(name, feed_filter(ns, "inventory", p))
            ends[p] = last.seq or 0
    return ends


async def _replay(nc: NATS, ns: str, total: int) -> float:
    """Read the events stream from its start with an ordered consumer; return when it began."""
    js = nc.jetstream()
    began = time.perf_counter()
    sub = await js.subscribe(context_filter(ns, "inventory", "evt"), ordered_consumer=True)
    for _ in range(total):
        await sub.next_msg(timeout=10)
    await sub.unsubscribe()
    return began


@contextlib.asynccontextmanager
async def _connection(url: str) -> AsyncIterator[NATS]:
    nc = await nats.connect(url, pending_size=64 * 1024 * 1024)
    try:
        yield nc
    finally:
        await nc.close()
