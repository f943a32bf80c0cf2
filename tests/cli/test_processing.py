"""`radix reaction|projection parked|retry|skip` and `radix status` with partitions, run as a user runs them."""

from __future__ import annotations

import json
from typing import Any

from nats.aio.client import Client as NATS

from radix import Client, EmbeddedNats, Node, NodeConfig, Record, projection
from radix.domain import KVView
from radix.domain.processing import Write
from radix.examples.inventory import CheckIn, CreateItem, inventory
from radix.runtime.config import ProcessingConfig
from radix.store.parked import ParkedStore
from radix.store.views import open_kv
from radix.testing import eventually
from tests.cli.running import radix
from tests.processing import inventory_with, stock_writes


def fragile(record: Record[Any]) -> list[Write]:
    if record.aggregate_id == "bad":
        raise ValueError("no stock for bad")
    return stock_writes(record)


async def test_parked_events_are_listed_and_skipped_and_status_shows_the_partitions(
    nc: NATS, namespace: str, nats_server: EmbeddedNats
) -> None:
    context = inventory_with(projection("stock", into=KVView(), attempts=1)(fragile))
    config = NodeConfig(node_id="cli-p", processing=ProcessingConfig(partitions=2, interval=0.2))
    async with Node({namespace: [context]}, nats=nc, config=config):
        client = Client(nc, inventory, namespace=namespace)
        for item in ("good", "bad"):
            await client.send(CreateItem(name=item), aggregate_id=item)
        await client.send(CheckIn(count=2), aggregate_id="bad")
        parked = ParkedStore(nc)

        async def two_parked() -> bool:
            return len(await parked.of(namespace, "inventory", "stock")) == 2

        await eventually(two_parked, timeout=20, what="bad's two events parked")
        where = ("--namespace", namespace, "--context", "inventory", "--nats", nats_server.url)
        code, out, err = await radix("projection", "parked", "stock", *where)
        assert code == 0, err
        assert "projection stock of" in out
        assert "2 event(s) parked" in out
        assert "InventoryItem/bad v1 ItemCreated" in out
        assert "ValueError('no stock for bad') (after 1 attempt(s))" in out
        code, out, err = await radix("status", "--namespace", namespace, "--nats", nats_server.url)
        assert code == 0, err
        assert "projection inventory/stock partition 0: at " in out
        assert "projection inventory/stock partition 1: at " in out
        code, out, err = await radix("projection", "skip", "stock", *where, "--json")
        assert code == 0, err
        assert [p["version"] for p in json.loads(out)["parked"]] == [1, 2]
        assert await parked.of(namespace, "inventory", "stock") == []
        await client.send(CheckIn(count=1), aggregate_id="good")
        model = await open_kv(namespace, "inventory", "stock", nc)

        async def good_counted() -> bool:
            return (await model.get("good") or {}).get("count") == 1

        await eventually(good_counted, timeout=20, what="good projected")


async def test_a_projection_rebuilt_from_the_start_drops_what_the_view_held_and_catches_up(
    nc: NATS, namespace: str, nats_server: EmbeddedNats
) -> None:
    """`radix projection rebuild`: the nodes let the projection go, the view is dropped, and it is built
    again from the feed's start, with progress shown; a value the live view held wrongly is gone."""
    from radix.examples import restock
    from radix.store.views import open_kv

    config = NodeConfig(node_id="cli-r", processing=ProcessingConfig(partitions=2, interval=0.2))
    async with Node({namespace: [restock.inventory]}, nats=nc, config=config):
        client = Client(nc, inventory, namespace=namespace)
        for item in ("a", "b"):
            await client.send(CreateItem(name=item), aggregate_id=item)
            await client.send(CheckIn(count=3), aggregate_id=item)
        model = await open_kv(namespace, "inventory", "stock", nc)
        expected = {"a": {"name": "a", "count": 3}, "b": {"name": "b", "count": 3}}

        async def as_expected() -> bool:
            return await model.items() == expected

        await eventually(as_expected, timeout=20, what="the live view")
        await model.bucket.put("stray", b'{"name": "not from any event"}')
        code, out, err = await radix(
            "projection",
            "rebuild",
            "stock",
            "--namespace",
            namespace,
            "--code",
            "radix.examples.restock:inventory",
            "--nats",
            nats_server.url,
            "--timeout",
            "60",
            "--json",
        )
        assert code == 0, out + err
        assert json.loads(out)["applied"] == 4
        assert "reset: it is built again from the start" in err
        assert "rebuilt:" in err
        assert await model.items() == expected
