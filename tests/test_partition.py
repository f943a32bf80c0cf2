"""A node cut off from NATS by a partition: others take its aggregates over; when it heals, it steps down."""

from __future__ import annotations

import dataclasses
import time

import nats
from nats.aio.client import Client as NATS

from radix import Client, ConnectOptions, EmbeddedNats, Node, NodeConfig
from radix.examples.inventory import CheckIn, CreateItem, inventory
from radix.testing import TcpProxy, eventually
from radix.workload import Workload, check_histories


async def test_a_partitioned_node_is_replaced_and_steps_down(
    nats_server: EmbeddedNats, nc: NATS, namespace: str
) -> None:
    """Black-hole one node's link to NATS under load; its aggregates move; after healing it re-registers."""
    host, port = nats_server.url.removeprefix("nats://").split(":")
    proxy = await TcpProxy(host, int(port)).start()
    config = NodeConfig(liveness_ttl=2, rebalance_batch=0, forward_timeout=0.5)
    cut = Node(
        {namespace: [inventory]},
        nats=ConnectOptions(servers=[proxy.url]),
        config=dataclasses.replace(config, node_id="cut-off"),
    )
    other_nc = await nats.connect(nats_server.url)
    other = Node({namespace: [inventory]}, nats=other_nc, config=dataclasses.replace(config, node_id="other"))
    try:
        await cut.start()
        client = Client(nc, inventory, namespace=namespace)
        ids = [f"p-{i}" for i in range(6)]
        load = Workload(client, ids, lambda _, __: CheckIn(count=1), timeout=30)
        await load.create(lambda _: CreateItem(name="x"))
        assert cut.live_actors == 6
        await other.start()
        incarnation = cut.placement(namespace).incarnation
        load.start()
        await eventually(lambda: all(load.ok_after(a, 0) >= 2 for a in ids), what="load running")

        cut_at = time.monotonic()
        proxy.mode = "blackhole"
        await eventually(
            lambda: all(load.ok_after(a, cut_at) >= 3 for a in ids),
            timeout=60,
            what="the other node serving every aggregate",
        )
        assert other.live_actors == 6

        proxy.mode = "pass"
        proxy.reset()  # the stale connection is dropped; the node reconnects through the healed link
        await eventually(
            lambda: cut.placement(namespace).incarnation != incarnation,
            timeout=60,
            what="the healed node registering under a new incarnation",
        )
        healed_at = time.monotonic()
        await eventually(
            lambda: all(load.ok_after(a, healed_at) >= 2 for a in ids), timeout=60, what="load going on after the heal"
        )
        await load.stop()
        assert [o for o in load.ops if o.outcome == "fail"] == []
        await check_histories(nc, load)
    finally:
        await other.stop()
        await cut.stop()
        await other_nc.close()
        await proxy.stop()
