"""Partitions: a node cut off from NATS (others take its aggregates over; when it heals, it steps down),
and a NATS server cut off from its peers while a node starts."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time

import nats
from nats.aio.client import Client as NATS
from nats.js import errors as js_errors

from radix import Client, ConnectOptions, EmbeddedNats, Node, NodeConfig, PlacementConfig, StoreConfig
from radix.examples.inventory import CheckIn, CreateItem, inventory
from radix.store.streams import ERR_NO_SUITABLE_PEERS, NOT_ANSWERING
from radix.testing import TcpProxy, capture_logs, eventually
from radix.tools.chaos.harness import chaos_servers
from radix.tools.workload import Workload, check_histories
from radix.wire.names import events_stream


async def test_a_partitioned_node_is_replaced_and_steps_down(
    nats_server: EmbeddedNats, nc: NATS, namespace: str
) -> None:
    """Black-hole one node's link to NATS under load; its aggregates move; after healing it re-registers."""
    host, port = nats_server.url.removeprefix("nats://").split(":")
    proxy = await TcpProxy(host, int(port)).start()
    config = NodeConfig(placement=PlacementConfig(liveness_ttl=2, rebalance_batch=0, forward_timeout=0.5))
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


async def test_a_node_started_while_a_server_is_cut_off_from_its_peers_waits_and_starts(namespace: str) -> None:
    """While one of three servers is cut off, JetStream answers that it cannot place three replicas; a node
    starting then (R3) waits, saying so, and starts and serves once the server is back."""
    async with chaos_servers() as servers:
        urls = servers.urls[:2]  # the node and the test talk to the two servers that stay connected
        nc = await nats.connect(urls)
        node = Node(
            {namespace: [inventory]},
            nats=ConnectOptions(servers=urls),
            config=NodeConfig(node_id="patient", store=StoreConfig(replicas=3)),
        )
        probes = itertools.count()
        try:
            servers.isolate(2)

            async def placement_refused() -> bool:
                name = f"PROBE_{next(probes)}"
                try:
                    await nc.jetstream(timeout=2).add_stream(name=name, subjects=[f"{name}.>"], num_replicas=3)
                except js_errors.BadRequestError as e:
                    return e.err_code == ERR_NO_SUITABLE_PEERS
                except NOT_ANSWERING:
                    return False
                return False

            await eventually(placement_refused, timeout=60, what="JetStream refusing to place three replicas")
            with capture_logs() as logs:
                starting = asyncio.create_task(node.start())
                await eventually(
                    lambda: (
                        any(e["event"] == "waiting for jetstream to place replicas" for e in logs) or starting.done()
                    ),
                    timeout=30,
                    what="the node saying it waits",
                )
                assert not starting.done(), starting.exception()  # waiting, not failed
                servers.reconnect()
                await asyncio.wait_for(starting, timeout=60)
            result = await Client(nc, inventory, namespace=namespace).send(
                CreateItem(name="patient"), aggregate_id="p-1"
            )
            assert result.version == 1
            info = await nc.jetstream().stream_info(events_stream(namespace, "inventory"))
            assert info.config.num_replicas == 3
        finally:
            await node.stop()
            await nc.close()
