"""`radix node --processes N`: N node processes as one unit, on a real nats-server."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from nats.aio.client import Client as NATS

from radix import Address, Client, Node, NodeConfig, PlacementConfig
from radix.cli.cluster import statuses
from radix.cli.node import child_argv
from radix.errors import RadixError
from radix.examples.inventory import CheckIn, CreateItem, inventory
from radix.testing import NodeProcess, eventually, lease_owners
from radix.transport.server import EmbeddedNats


def test_each_process_gets_the_arguments_of_one_node() -> None:
    """The unit's own flags are left out; each process gets its id, the servers and a metrics port of its own."""
    argv = ["node", "--processes", "2", "--namespace", "a", "--node-id=u", "--metrics-port", "9100", "--nats", "x"]
    assert child_argv(argv, node_id="u-2", urls=["nats://127.0.0.1:1"], metrics_port=9100, k=2) == [
        "node",
        "--namespace",
        "a",
        "--processes",
        "1",
        "--node-id",
        "u-2",
        "--nats",
        "nats://127.0.0.1:1",
        "--metrics-port",
        "9101",
    ]
    assert child_argv(["node", "--proc", "3", "--metrics-port=0"], node_id="u-1", urls=["u"], metrics_port=0, k=1)[
        -2:
    ] == ["--metrics-port", "0"]  # any free port, for each


async def test_processes_serve_as_nodes_of_the_cluster_and_drain_together(
    nats_server: EmbeddedNats, namespace: str, nc: NATS, tmp_path: Path
) -> None:
    """Two processes are two live nodes (`unit-1`, `unit-2`) that each own aggregates; one SIGTERM to the
    unit drains both, one after the other, and it exits 0; the aggregates are served afterwards."""
    unit = NodeProcess(
        nats_url=nats_server.url,
        namespace=namespace,
        context="radix.examples.inventory:inventory",
        node_id="unit",
        log_dir=tmp_path,
        extra=["--processes", "2", "--liveness-ttl", "2"],
    )
    unit.start()
    try:

        async def both_running() -> bool:
            try:
                rows = await statuses(nc, namespace, time.monotonic() + 2)
            except RadixError:  # no node registered yet
                return False
            return sorted(r["node"] for r in rows if r.get("state") == "running") == ["unit-1", "unit-2"]

        await eventually(both_running, timeout=30, what="both processes of the unit running")
        client = Client(nc, inventory, namespace=namespace)
        ids = [f"p-{i}" for i in range(24)]
        for aggregate_id in ids:
            assert (await client.send(CreateItem(name="x"), aggregate_id=aggregate_id)).version == 1
        addresses = [Address(namespace, "inventory", "InventoryItem", i) for i in ids]
        owners = await lease_owners(nc, addresses)
        assert set(owners.values()) == {"unit-1", "unit-2"}  # the queue group spreads first commands
        assert await asyncio.to_thread(unit.stop, 30) == 0
        assert await statuses(nc, namespace, time.monotonic() + 2) == []
    finally:
        unit.stop(timeout=5)
    drained = [r for r in unit.log_records() if r["event"] == "drained"]
    assert [r["node"] for r in drained] == ["unit-2", "unit-1"]  # one after the other, the last first
    began = {r["node"]: r["timestamp"] for r in unit.log_records() if r["event"] == "draining"}
    assert began["unit-1"] > drained[0]["timestamp"]
    assert drained[0]["migrations"] > 0  # unit-2 handed its aggregates to unit-1, which was still running
    # Whatever a process handed on as the unit stopped, a node started later serves every aggregate.
    config = NodeConfig(placement=PlacementConfig(liveness_ttl=2, rebalance_batch=0))
    async with Node({namespace: [inventory]}, nats=nc, config=config):
        for aggregate_id in ids:
            assert (await client.send(CheckIn(count=1), aggregate_id=aggregate_id)).version == 2
