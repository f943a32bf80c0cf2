"""The cluster as it runs: several `radix node` processes on one real nats-server, under load and faults.

Each test records every command it sends (ok, fail, or info when a time-out leaves it
unknown) and checks the stored histories afterwards: no acknowledged command lost,
versions contiguous, no command applied twice, no event from a command never sent.
Failover and pause times are printed (run with -s to see them); speed is measured by
`radix bench`, never asserted here.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from nats.aio.client import Client as NATS

from radix import Address, Client, EmbeddedNats
from radix.examples.inventory import CheckIn, CreateItem, inventory
from radix.store.kv import KVBucket
from radix.store.placement import shard_table
from radix.testing import NodeProcess, eventually, lease_owners
from radix.tools.workload import Workload, check_histories, quantiles
from radix.wire.names import nodes_bucket

TTL = 2


def address_in(namespace: str) -> Callable[[str], Address]:
    return lambda aggregate: Address(namespace, "inventory", "InventoryItem", aggregate)


def inventory_nodes(
    server: EmbeddedNats, namespace: str, logs: Path, count: int, ttl: int, prefix: str
) -> list[NodeProcess]:
    """`count` node processes of the inventory example (not started), rebalancing off."""
    return NodeProcess.several(
        count,
        nats_url=server.url,
        namespace=namespace,
        context="radix.examples.inventory:inventory",
        log_dir=logs,
        prefix=prefix,
        extra=["--liveness-ttl", str(ttl), "--rebalance-interval", "3600"],
    )


@pytest.fixture
def nodes(nats_server: EmbeddedNats, namespace: str, tmp_path: Path) -> Iterator[dict[str, NodeProcess]]:
    processes = inventory_nodes(nats_server, namespace, tmp_path, 3, TTL, "p")
    started = {process.node_id: process.start() for process in processes}
    yield started
    for process in started.values():
        process.stop()


@pytest.fixture
async def running(nodes: dict[str, NodeProcess], nc: NATS) -> dict[str, NodeProcess]:
    for process in nodes.values():
        await process.wait_running(nc)
    return nodes


async def owners(nc: NATS, namespace: str, aggregates: Sequence[str]) -> dict[str, str]:
    return await lease_owners(nc, [address_in(namespace)(a) for a in aggregates])


def busiest(running: dict[str, NodeProcess], placed: dict[str, str]) -> tuple[str, list[str]]:
    """The node owning the most aggregates, and those aggregates."""
    victim = max(running, key=lambda n: sum(1 for o in placed.values() if o == n))
    return victim, [a for a, o in placed.items() if o == victim]


async def loaded(nc: NATS, namespace: str, count: int) -> Workload:
    client = Client(nc, inventory, namespace=namespace)
    aggregates = [f"f-{i}" for i in range(count)]
    load = Workload(client, aggregates, lambda _, __: CheckIn(count=1))
    await load.create(lambda _: CreateItem(name="x"))
    load.start()
    await eventually(lambda: all(load.ok_after(a, 0) >= 3 for a in aggregates), timeout=30, what="load running")
    return load


def report(what: str, seconds: list[float]) -> None:
    p50, p99, most = quantiles(seconds)
    print(f"\n{what}: n={len(seconds)} p50={p50:.3f}s p99={p99:.3f}s max={most:.3f}s")


async def test_kill_9_fails_over_without_loss(running: dict[str, NodeProcess], nc: NATS, namespace: str) -> None:
    """kill -9 of a node under load: its aggregates accept commands elsewhere, nothing acked is lost."""
    load = await loaded(nc, namespace, 24)
    placed = await owners(nc, namespace, load.aggregates)
    victim, affected = busiest(running, placed)
    assert affected
    killed_at = time.monotonic()
    running[victim].signal(signal.SIGKILL)
    await eventually(
        lambda: all(load.ok_after(a, killed_at) >= 2 for a in load.aggregates),
        timeout=60,
        what="every aggregate accepting commands after the kill",
    )
    await load.stop()
    report(f"failover after kill -9 (TTL {TTL}s)", [load.recovery(a, killed_at) for a in affected])
    assert [o for o in load.ops if o.outcome == "fail"] == []
    await check_histories(nc, load)
    moved = await owners(nc, namespace, affected)
    assert victim not in moved.values()


async def test_a_paused_owner_is_fenced_and_steps_down(
    running: dict[str, NodeProcess], nc: NATS, namespace: str
) -> None:
    """SIGSTOP an owner past its TTL, let others take over, SIGCONT it: it steps down, no history forks."""
    load = await loaded(nc, namespace, 12)
    placed = await owners(nc, namespace, load.aggregates)
    victim, affected = busiest(running, placed)
    before = await running[victim].status(nc)
    paused_at = time.monotonic()
    running[victim].signal(signal.SIGSTOP)
    await eventually(
        lambda: all(load.ok_after(a, paused_at) >= 2 for a in affected),
        timeout=60,
        what="the paused node's aggregates accepting commands elsewhere",
    )
    taken = await owners(nc, namespace, affected)
    assert victim not in taken.values()
    resumed_at = time.monotonic()
    running[victim].signal(signal.SIGCONT)

    async def stepped_down() -> bool:
        status = await running[victim].status(nc, timeout=2)
        return bool(status["incarnation"] != before["incarnation"])

    await eventually(stepped_down, timeout=30, what="the resumed node registering under a new incarnation")
    await eventually(
        lambda: all(load.ok_after(a, resumed_at) >= 3 for a in load.aggregates),
        timeout=60,
        what="load continuing after the resume",
    )
    await load.stop()
    report("takeover of a paused node's aggregates", [load.recovery(a, paused_at) for a in affected])
    assert [o for o in load.ops if o.outcome == "fail"] == []
    await check_histories(nc, load)
    records = running[victim].log_records()
    assert [r["namespace"] for r in records if r["event"] == "liveness lost: stepping down from every aggregate"]
    print([r for r in records if r["level"] in ("warning", "error")][-20:])


async def test_sigterm_drains_under_load_without_failures(
    running: dict[str, NodeProcess], nc: NATS, namespace: str
) -> None:
    """SIGTERM hands every aggregate off: no command fails or goes unanswered, and the node exits cleanly."""
    load = await loaded(nc, namespace, 24)
    placed = await owners(nc, namespace, load.aggregates)
    victim, affected = busiest(running, placed)
    drained_at = time.monotonic()
    running[victim].signal(signal.SIGTERM)
    process = running[victim].process
    assert process is not None
    await eventually(lambda: process.poll() is not None, timeout=30, what="the drained node exiting")
    assert process.returncode == 0
    await eventually(
        lambda: all(load.ok_after(a, drained_at) >= 3 for a in load.aggregates),
        timeout=60,
        what="load continuing after the drain",
    )
    await load.stop()
    during = [
        o.end - o.start for o in load.ops if o.aggregate in affected and o.end >= drained_at and o.outcome == "ok"
    ]
    report("command latency on drained aggregates during and after the drain", during)
    assert [o for o in load.ops if o.outcome != "ok"] == []
    await check_histories(nc, load)
    drained = [r for r in running[victim].log_records() if r["event"] == "drained"]
    assert len(drained) == 1
    assert drained[0]["migrations"] == len(affected)
    print(f"handoff pause per aggregate: p50 {drained[0]['pause_ms_p50']} ms, p99 {drained[0]['pause_ms_p99']} ms")


async def test_a_killed_node_is_found_gone_long_before_its_ttl(
    nats_server: EmbeddedNats, namespace: str, tmp_path: Path, nc: NATS
) -> None:
    """With a liveness TTL of 20 s, a node killed with kill -9 is presumed dead from its silent inbox: its
    liveness key is deleted, its aggregates accept commands elsewhere and every one of its shards is taken
    over within 10 s, which waiting out the TTL could not do; nothing acknowledged is lost."""
    processes = inventory_nodes(nats_server, namespace, tmp_path, 2, 20, "q")
    try:
        for process in processes:
            process.start()
        for process in processes:
            await process.wait_running(nc)
        load = await loaded(nc, namespace, 12)
        victim, held = busiest({p.node_id: p for p in processes}, await owners(nc, namespace, load.aggregates))
        killed_at = time.monotonic()
        next(p for p in processes if p.node_id == victim).signal(signal.SIGKILL)
        await eventually(
            lambda: all(load.ok_after(a, killed_at) for a in held), timeout=10, what="the victim's aggregates served"
        )
        report("failover after kill -9 (TTL 20s)", [load.recovery(a, killed_at) for a in held])
        assert (await KVBucket(nc, nodes_bucket(namespace)).get(victim, leader=True)).value is None

        async def victim_holds_nothing() -> bool:
            _, owners = await shard_table(nc, namespace, "inventory")
            return victim not in owners.values()

        # Every shard of the victim, not only those the load touched, is taken over before the TTL.
        await eventually(victim_holds_nothing, timeout=10, what="the victim's shards taken over")
        await load.stop()
        await check_histories(nc, load)
    finally:
        for process in processes:
            process.stop()
