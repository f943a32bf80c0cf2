"""A KV view on a real nats-server: updates checked against the revision they were computed from, and a
checkpoint that fences a reader which lost its partition."""

from __future__ import annotations

import asyncio
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NATS

from radix import EmbeddedNats
from radix.domain import Put, Record, Update, Write
from radix.errors import CheckpointMovedError, DefinitionError
from radix.examples.inventory import ItemsCheckedIn
from radix.store.views import open_kv
from radix.testing import record


def count_all(record: Record[Any]) -> list[Write]:
    """One key that every partition updates."""
    return [Update("total", lambda n: n + 1, default=0)]


def checked_in(position: int) -> Record[ItemsCheckedIn]:
    return record(ItemsCheckedIn(count=1), aggregate_id=f"i-{position}", position=position)


async def test_two_partitions_updating_one_key_lose_no_update(nats_server: EmbeddedNats, namespace: str) -> None:
    """Two nodes' models (connections of their own) add to one key from two partitions, interleaved: the
    one whose remembered revision is stale computes its batch again, so every addition counts."""
    first, second = await nats.connect(nats_server.url), await nats.connect(nats_server.url)
    try:
        a = await open_kv(namespace, "inventory", "totals", first)
        b = await open_kv(namespace, "inventory", "totals", second)

        async def add(model: Any, partition: int) -> None:
            for n in range(1, 21):
                await model.apply(partition, [checked_in(n)], count_all)

        await asyncio.gather(add(a, 0), add(b, 1))
        assert await a.get("total") == 40
        assert await a.checkpoint(0) == await b.checkpoint(1) == 20
    finally:
        await first.close()
        await second.close()


async def test_a_reader_that_lost_its_partition_cannot_write_after_the_next_owner(
    nats_server: EmbeddedNats, nc: NATS, namespace: str
) -> None:
    """The former owner remembers the checkpoint it wrote; the next owner read it and wrote after it: the
    former owner's next batch is refused, and nothing of it is written."""
    former = await open_kv(namespace, "inventory", "stock", nc)

    def put(record: Record[Any]) -> list[Write]:
        return [Put(record.aggregate_id, record.position)]

    await former.apply(0, [checked_in(1)], put)
    async with await nats.connect(nats_server.url) as other:
        owner = await open_kv(namespace, "inventory", "stock", other)
        assert await owner.checkpoint(0) == 1
        await owner.apply(0, [checked_in(2)], put)
        with pytest.raises(CheckpointMovedError, match="written by another writer"):
            await former.apply(0, [checked_in(3)], put)
        assert await owner.checkpoint(0) == 2
        assert await owner.get("i-3") is None


async def test_a_parked_event_retried_by_two_readers_is_applied_once(nats_server: EmbeddedNats, namespace: str) -> None:
    """Its marker is written with its writes and must be absent: the second reader's retry writes nothing."""
    first, second = await nats.connect(nats_server.url), await nats.connect(nats_server.url)
    try:
        a = await open_kv(namespace, "inventory", "totals", first)
        b = await open_kv(namespace, "inventory", "totals", second)
        assert not await b.was_applied("parked-1")  # both readers see it still to do
        await a.apply(0, [checked_in(7)], count_all, parked="parked-1")
        await b.apply(0, [checked_in(7)], count_all, parked="parked-1")
        assert await a.get("total") == 1
        assert await b.was_applied("parked-1")
    finally:
        await first.close()
        await second.close()


async def test_a_change_that_alters_its_argument_leaves_the_default_as_declared(nc: NATS, namespace: str) -> None:
    shared: dict[str, int] = {"count": 0}

    def bump(row: dict[str, int]) -> dict[str, int]:
        row["count"] += 1
        return row

    def count(record: Record[Any]) -> list[Write]:
        return [Update(record.aggregate_id, bump, default=shared)]

    model = await open_kv(namespace, "inventory", "counts", nc)
    await model.apply(0, [checked_in(1), checked_in(2)], count)
    assert await model.items() == {"i-1": {"count": 1}, "i-2": {"count": 1}}
    assert shared == {"count": 0}


async def test_the_events_of_one_stored_commit_write_at_most_one_batch_of_keys(nc: NATS, namespace: str) -> None:
    """A checkpoint counts whole feed messages: one whose events write more keys than an atomic batch holds
    is refused (and parked by its reader) rather than written in part."""

    def spread(record: Record[Any]) -> list[Write]:
        return [Put(f"k-{n}", n) for n in range(1000)]

    model = await open_kv(namespace, "inventory", "wide", nc)
    with pytest.raises(DefinitionError, match="write 1000 keys"):
        await model.apply(0, [checked_in(1)], spread)
    assert await model.checkpoint(0) == 0


async def test_a_projection_may_not_write_radix_own_keys(nc: NATS, namespace: str) -> None:
    """A write to `_checkpoint.` or `_parked.` would move a checkpoint behind Radix's back: refused, and
    nothing of the batch is written."""

    def forge(record: Record[Any]) -> list[Write]:
        return [Put("ok", 1), Put("_checkpoint.0", 999)]

    model = await open_kv(namespace, "inventory", "forged", nc)
    with pytest.raises(DefinitionError, match=r"may not write '_checkpoint\.0'"):
        await model.apply(0, [checked_in(1)], forge)
    assert await model.checkpoint(0) == 0
    assert await model.get("ok") is None
