"""The feed on a real nats-server: partitions by aggregate, a new owner reading on from the acknowledged
position, and a reader that stops when it is cancelled."""

from __future__ import annotations

import asyncio

from nats.aio.client import Client as NATS

from radix.examples.inventory import ItemsCheckedIn, inventory
from radix.store import JetStreamEventStore
from radix.store.feed import Feed
from radix.testing import eventually
from radix.wire.names import Address, feed_stream, parse_feed_subject


async def fill(nc: NATS, namespace: str, aggregates: int, events: int, after: int = 0) -> None:
    """`events` check-ins on each of `aggregates` items, after the `after` they hold."""
    data = inventory.codec("InventoryItem").encode_event(ItemsCheckedIn(count=1))
    async with JetStreamEventStore(nc) as store:
        for a in range(aggregates):
            address = Address(namespace, "inventory", "InventoryItem", f"a-{a}")
            for version in range(after, after + events):
                await store.append(address, [data], expected_version=version, command_id=f"c-{a}-{version}")


async def test_each_aggregate_is_in_one_partition_in_order_and_a_new_owner_reads_on(nc: NATS, namespace: str) -> None:
    await fill(nc, namespace, aggregates=6, events=3)
    feed = Feed(nc, partitions=3, replicas=1, timeout=5)
    await feed.ensure(namespace, "inventory")

    async def copied() -> bool:
        return int((await nc.jetstream().stream_info(feed_stream(namespace, "inventory"))).state.messages) == 18

    await eventually(copied, what="the feed holding every event")
    seen: dict[str, tuple[int, list[int]]] = {}
    for partition in range(3):
        cursor = await feed.take_over(namespace, "inventory", "p", partition, epoch=1, start=None)
        messages = await cursor.fetch(100, timeout=1)
        for m in messages:
            parsed = parse_feed_subject(m.subject)
            assert parsed is not None
            _, _, aggregate = parsed
            owner, positions = seen.setdefault(aggregate, (partition, []))
            assert owner == partition  # one aggregate, one partition
            positions.append(m.metadata.sequence.stream)
        if messages:
            await messages[len(messages) // 2].ack_sync()  # acknowledged half way, then "killed"
        await cursor.close()
        again = await feed.take_over(namespace, "inventory", "p", partition, epoch=2, start=None)
        rest = await again.fetch(100, timeout=1)
        assert [m.metadata.sequence.stream for m in rest] == [
            m.metadata.sequence.stream for m in messages[len(messages) // 2 + 1 :]
        ]
        await again.close()
    assert sorted(seen) == [f"a-{a}" for a in range(6)]
    assert all(positions == sorted(positions) and len(positions) == 3 for _, positions in seen.values())


async def test_a_reader_waiting_for_messages_stops_when_cancelled(nc: NATS, namespace: str) -> None:
    """A partition's reader is stopped by cancelling it, also while its fetch waits at the server."""
    await fill(nc, namespace, aggregates=1, events=1)
    feed = Feed(nc, partitions=1, replicas=1, timeout=5)
    await feed.ensure(namespace, "inventory")
    cursor = await feed.take_over(namespace, "inventory", "p", 0, epoch=1, start=1)
    reading = asyncio.create_task(cursor.fetch(10, timeout=30))

    async def pulling() -> bool:
        info = await nc.jetstream().consumer_info(cursor.stream, cursor.consumer)
        return bool(info.num_waiting)

    await eventually(pulling, what="the fetch waiting at the server")
    reading.cancel()
    done, _ = await asyncio.wait([reading], timeout=5)
    assert reading in done
    assert reading.cancelled()
    await cursor.close()


async def test_messages_delivered_again_after_a_lost_acknowledgement_are_left_out(nc: NATS, namespace: str) -> None:
    """JetStream delivers again what was not acknowledged within `ack_wait`: the cursor handed those on
    already, so it hands on only what comes after them."""
    await fill(nc, namespace, aggregates=1, events=3)
    feed = Feed(nc, partitions=1, replicas=1, timeout=5, ack_wait=0.5)
    await feed.ensure(namespace, "inventory")
    cursor = await feed.take_over(namespace, "inventory", "p", 0, epoch=1, start=None)

    async def first() -> bool:
        return bool(await cursor.fetch(10, timeout=0.5))

    await eventually(first, what="the first messages handed on")  # and never acknowledged
    handed = cursor.delivered
    assert handed > 0

    async def settled() -> bool:
        """Handed on, never acknowledged: only their redelivery, left out and acknowledged, settles them."""
        await cursor.fetch(10, timeout=0.2)
        info = await nc.jetstream().consumer_info(cursor.stream, cursor.consumer)
        return not info.num_ack_pending

    await eventually(settled, what="the redelivered messages left out and acknowledged")
    assert cursor.delivered == handed  # nothing handed on twice
    await fill(nc, namespace, aggregates=1, events=1, after=3)
    later = await cursor.fetch(10, timeout=2)
    assert later
    assert all(m.metadata.sequence.stream > handed for m in later)
    await cursor.close()
