"""`radix demo`: a three-node cluster on an embedded nats-server, under load, through a crash and a drain.

It starts NATS and three `radix node` processes hosting the inventory example, sends
a live workload, kills one node with SIGKILL and shows its aggregates failing over,
drains another with SIGTERM, then checks every stored history and prints a summary.
Everything it starts it stops, also on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from radix.client import Client
from radix.examples.inventory import CheckIn, CreateItem, inventory
from radix.testing import NodeProcess, eventually, lease_owners
from radix.tools.workload import Workload, check_histories, quantiles
from radix.transport.connection import ConnectOptions, connect
from radix.transport.server import EmbeddedNats
from radix.wire.names import Address

__all__ = ["run_demo"]

NAMESPACE = "demo"
TTL = 2


def say(text: str) -> None:
    print(text, flush=True)


@contextlib.contextmanager
def _processes(processes: list[NodeProcess]) -> Iterator[None]:
    try:
        yield
    finally:
        for process in processes:
            process.stop()


async def run_demo(*, items: int, seconds: float) -> int:
    """Run the demo; return 0 if every check passed."""
    started = time.monotonic()
    say("radix demo: three nodes serving the inventory example, under load, through a crash and a drain")
    with tempfile.TemporaryDirectory(prefix="radix-demo-") as workdir:
        async with EmbeddedNats() as server:
            say(f"  nats-server with JetStream at {server.url}")
            nodes = NodeProcess.several(
                3,
                nats_url=server.url,
                namespace=NAMESPACE,
                context="radix.examples.inventory:inventory",
                log_dir=Path(workdir),
                prefix="node-",
                extra=["--liveness-ttl", str(TTL)],
            )
            with _processes(nodes):
                return await _run(server, nodes, items=items, seconds=seconds, started=started)


async def _run(server: EmbeddedNats, nodes: list[NodeProcess], *, items: int, seconds: float, started: float) -> int:
    nc = await connect(ConnectOptions(servers=[server.url]), name="radix demo")
    try:
        for node in nodes:
            node.start()
        for node in nodes:
            await node.wait_running(nc)
        say(f"  {len(nodes)} node processes running: {', '.join(n.node_id for n in nodes)} (liveness TTL {TTL}s)")
        client = Client(nc, inventory, namespace=NAMESPACE)
        ids = [f"sku-{i}" for i in range(items)]
        load = Workload(client, ids, lambda _, n: CheckIn(count=1 + n % 5))
        await load.create(lambda i: CreateItem(name=i))
        load.start()
        say(f"  created {items} items; {items} senders now check stock in, one command at a time each")
        await _progress(load, seconds / 3, "warming up")

        owners = await lease_owners(nc, [Address(NAMESPACE, "inventory", "InventoryItem", i) for i in ids])
        victim = max(nodes, key=lambda n: sum(1 for o in owners.values() if o == n.node_id))
        affected = [a for a, o in owners.items() if o == victim.node_id]
        killed_at = time.monotonic()
        victim.signal(signal.SIGKILL)
        say(f"  kill -9 {victim.node_id}, which owned {len(affected)} of {items} aggregates")
        await eventually(lambda: all(load.ok_after(a, killed_at) for a in affected), timeout=30, what="failover")
        failover = [load.recovery(a, killed_at) for a in affected]
        p50, p99, most = quantiles(failover)
        say(f"  failover: its aggregates accepted commands on other nodes after p50 {p50:.2f}s, p99 {p99:.2f}s")
        await _progress(load, seconds / 3, "running on two nodes")

        drained = next(n for n in nodes if n is not victim)
        live = [n for n in nodes if n is not victim and n is not drained]
        say(f"  SIGTERM {drained.node_id}: it hands its aggregates to {live[0].node_id} and exits")
        drained.signal(signal.SIGTERM)
        process = drained.process
        assert process is not None
        await eventually(lambda: process.poll() is not None, timeout=30, what="the drain")
        pause = _drain_pauses(drained)
        say(f"  drained: exit code {process.returncode}, {pause}")
        await _progress(load, seconds / 3, "running on one node")
        await load.stop()

        counts = await check_histories(nc, load)
        events = sorted(counts.values())
        say("")
        say("summary")
        say(f"  commands sent      {len(load.ops) + items}")
        say(f"  accepted           {load.count('ok') + items}")
        say(f"  failed             {load.count('fail')}")
        say(f"  unanswered (info)  {load.count('info')}")
        say(f"  failover           p50 {p50:.2f}s, p99 {p99:.2f}s, max {most:.2f}s ({len(affected)} aggregates)")
        say(f"  events/aggregate   min {events[0]}, mean {sum(events) / len(events):.1f}, max {events[-1]}")
        say(
            f"  verified           every acknowledged command stored once, versions contiguous, nothing lost "
            f"({time.monotonic() - started:.1f}s in all)"
        )
        return 0 if load.count("fail") == 0 else 1
    finally:
        await nc.close()


async def _progress(load: Workload, seconds: float, phase: str) -> None:
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        await asyncio.sleep(min(1.0, left))
        say(
            f"    {phase}: {load.count('ok')} accepted, {load.count('fail')} failed, "
            f"{sum(1 for o in load.ops if o.outcome == 'pending')} in flight"
        )


def _drain_pauses(node: NodeProcess) -> str:
    summary = node.drained()
    if summary is None:
        return "no drain summary in its log"
    return (
        f"{summary['migrations']} aggregates handed off, pause per aggregate p50 "
        f"{summary['pause_ms_p50']} ms, p99 {summary['pause_ms_p99']} ms"
    )
