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
from radix.errors import StoreError
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
        with pytest.raises(StoreError, match="moved by another writer"):
            await former.apply(0, [checked_in(3)], put)
        assert await owner.checkpoint(0) == 2
        assert await owner.get("i-3") is None
