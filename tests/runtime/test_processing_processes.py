"""Reactions and projections across `radix node` processes on one real nats-server: a node killed with
kill -9 mid-stream, its partitions taken over, every event's effect applied once."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from nats.aio.client import Client as NATS

from radix import Client, EmbeddedNats
from radix.examples.inventory import CheckIn, CreateItem, inventory
from radix.store import JetStreamEventStore
from radix.store.views import open_kv
from radix.testing import NodeProcess, eventually
from radix.tools.workload import Workload
from radix.wire.names import Address
from tests.runtime.test_processing import noted

TTL = 2


@pytest.fixture
def nodes(nats_server: EmbeddedNats, namespace: str, tmp_path: Path) -> Iterator[dict[str, NodeProcess]]:
    processes = NodeProcess.several(
        2,
        nats_url=nats_server.url,
        namespace=namespace,
        context="tests.processing:noted_and_stocked",
        log_dir=tmp_path,
        prefix="r",
        extra=[
            "--context",
            "tests.processing:ledger",
            "--partitions",
            "4",
            "--liveness-ttl",
            str(TTL),
            "--rebalance-interval",
            "3600",
        ],
    )
    started = {process.node_id: process.start() for process in processes}
    yield started
    for process in started.values():
        process.stop()


async def check_ins_stored(nc: NATS, namespace: str, aggregates: list[str]) -> list[tuple[str, int]]:
    """Every stored check-in, as (aggregate, version)."""
    async with JetStreamEventStore(nc) as store:
        return [
            (a, e.version)
            for a in aggregates
            for c in await store.read(Address(namespace, "inventory", "InventoryItem", a))
            for e in c.events
            if e.type == "ItemsCheckedIn"
        ]


async def test_a_node_killed_mid_stream_leaves_every_event_handled_once(
    nodes: dict[str, NodeProcess], nc: NATS, namespace: str
) -> None:
    """Under load, the node owning most partitions is killed with kill -9: another takes its partitions
    over from their last acknowledged positions; the ledger notes every check-in once, in order per item,
    and the stock view counts every check-in once."""
    for process in nodes.values():
        await process.wait_running(nc)
    client = Client(nc, inventory, namespace=namespace)
    items = [f"k-{i}" for i in range(6)]
    load = Workload(client, items, lambda _, __: CheckIn(count=1))
    await load.create(lambda a: CreateItem(name=a))
    load.start()

    async def partitions() -> dict[str, int]:
        return {n: len((await p.status(nc))["processors"]) for n, p in nodes.items()}

    async def both_own_some() -> bool:
        return all(await partitions()) if len(await partitions()) == 2 else False

    await eventually(both_own_some, timeout=30, what="both nodes owning partitions")
    await eventually(lambda: _noted_at_least(nc, namespace, 30), timeout=30, what="30 check-ins noted")
    owned = await partitions()
    victim = max(owned, key=lambda n: owned[n])
    survivor = next(n for n in nodes if n != victim)
    nodes[victim].signal(signal.SIGKILL)
    at_kill = len(await noted(nc, namespace))
    await eventually(lambda: _owns(nodes[survivor], nc, 8), timeout=30, what=f"{survivor} owning every partition")
    await eventually(lambda: _noted_at_least(nc, namespace, at_kill + 30), timeout=30, what="noting after the kill")
    await load.stop()
    stored = await check_ins_stored(nc, namespace, items)

    async def all_noted() -> bool:
        return len(await noted(nc, namespace)) >= len(stored)

    await eventually(all_noted, timeout=60, what="every stored check-in noted")
    notes = await noted(nc, namespace)
    assert sorted((n.source, n.version) for n in notes) == sorted(stored)
    for item in items:
        assert [n.version for n in notes if n.source == item] == sorted(v for a, v in stored if a == item)
    model = await open_kv(namespace, "inventory", "stock", nc)
    counts = {a: sum(1 for s, _ in stored if s == a) for a in items}

    async def counted() -> bool:
        found = await model.items()
        return {a: found.get(a, {}).get("count") for a in items} == counts

    await eventually(counted, timeout=60, what="the stock view counting every check-in once")


async def _noted_at_least(nc: NATS, namespace: str, count: int) -> bool:
    return len(await noted(nc, namespace)) >= count


async def _owns(process: NodeProcess, nc: NATS, count: int) -> bool:
    try:
        return len((await process.status(nc))["processors"]) == count
    except Exception:
        return False
