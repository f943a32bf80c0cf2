"""Radix on a real three-server JetStream cluster on 127.0.0.1, with R3 streams and buckets."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import msgspec
import nats
import pytest
from nats.aio.client import Client as NATS

from radix import (
    Address,
    Client,
    ConnectOptions,
    EmbeddedCluster,
    JetStreamEventStore,
    Node,
    NodeConfig,
    PlacementConfig,
    StoreConfig,
)
from radix.domain import EventData
from radix.errors import RadixError
from radix.examples.inventory import CheckIn, CreateItem, inventory
from radix.testing import capture_logs, eventually
from radix.tools.workload import Workload, check_histories, quantiles
from radix.wire.names import events_stream


@pytest.fixture(scope="module")
async def cluster() -> AsyncIterator[EmbeddedCluster]:
    async with EmbeddedCluster() as servers:
        yield servers


async def test_reads_meant_for_the_leader_are_current_on_three_replicas(
    cluster: EmbeddedCluster, namespace: str
) -> None:
    """With three replicas, `head` and `read(leader=True)` ask the stream's leader: right after the appends
    they give every commit, trimmed and hinted as a direct read is."""
    nc: NATS = await nats.connect(cluster.urls)
    try:
        async with JetStreamEventStore(nc, config=StoreConfig(replicas=3)) as store:
            address = Address(namespace, "inventory", "InventoryItem", "lead-1")
            data = EventData("ItemsCheckedIn", "1.0", msgspec.Raw(b'{"count":1}'))
            written = [
                await store.append(address, [data, data], expected_version=0, command_id="c1"),
                await store.append(address, [data], expected_version=2, command_id="c2"),
                await store.append(address, [data], expected_version=3, command_id="c3"),
            ]
            assert await store.head(address) == written[-1].position
            from_leader = await store.read(address, after=1, leader=True)
            assert [(c.position, [e.version for e in c.events]) for c in from_leader] == [
                (written[0].position, [2]),
                (written[1].position, [3]),
                (written[2].position, [4]),
            ]
            hinted = await store.read(address, after=2, start=written[1].position, leader=True)
            assert [c.position for c in hinted] == [written[1].position, written[2].position]
    finally:
        await nc.close()


async def test_a_stream_leader_killed_under_load_loses_nothing(cluster: EmbeddedCluster, namespace: str) -> None:
    """kill -9 of the events stream's leader server: commands stall, then go on; nothing acknowledged is lost."""
    options = ConnectOptions(servers=cluster.urls)
    config = NodeConfig(node_id="r3-node", store=StoreConfig(replicas=3), placement=PlacementConfig(liveness_ttl=5))
    async with (
        Node({namespace: [inventory]}, nats=options, config=config),
        Client(options, inventory, namespace=namespace) as client,
    ):
        ids = [f"r3-{i}" for i in range(8)]
        load = Workload(client, ids, lambda _, __: CheckIn(count=1), timeout=60)
        await load.create(lambda _: CreateItem(name="x"))
        load.start()
        await eventually(lambda: all(load.ok_after(a, 0) >= 3 for a in ids), timeout=30, what="load running")
        nc: NATS = await nats.connect(cluster.urls)
        info = await nc.jetstream().stream_info(events_stream(namespace, "inventory"))
        assert info.cluster is not None
        assert len(info.cluster.replicas or []) == 2
        leader = next(s for s in cluster.servers if s.server_name == info.cluster.leader)
        killed_at = time.monotonic()
        leader.process.kill()
        leader.process.wait()
        await eventually(
            lambda: all(load.ok_after(a, killed_at) >= 3 for a in ids),
            timeout=90,
            what="commands accepted after the leader died",
        )
        await load.stop()
        stall = [load.recovery(a, killed_at) for a in ids]
        p50, p99, _ = quantiles(stall)
        print(f"\nstream leader killed: commands resumed after p50 {p50:.2f}s, p99 {p99:.2f}s")
        assert [o for o in load.ops if o.outcome == "fail"] == []
        await check_histories(nc, load)
        await nc.close()


async def test_one_replica_on_a_cluster_is_warned_of_and_refused_when_strict(
    cluster: EmbeddedCluster, namespace: str
) -> None:
    """A node on a clustered server asked for one replica would lose what only one server held: it says so
    at start, and refuses to start with `strict`; with three replicas it starts either way."""
    options = ConnectOptions(servers=cluster.urls)
    with capture_logs() as logs:
        async with Node({namespace: [inventory]}, nats=options, config=NodeConfig(node_id="lax")):
            pass
    warned = [e for e in logs if e["event"] == "unsafe settings"]
    assert len(warned) == 1
    assert "streams and buckets get one replica" in warned[0]["reason"]
    strict = Node({namespace: [inventory]}, nats=options, config=NodeConfig(node_id="strict", strict=True))
    with pytest.raises(RadixError, match=r"refusing to start on unsafe settings \(strict\): .* --replicas 3"):
        await strict.start()
    safe = NodeConfig(node_id="safe", strict=True, store=StoreConfig(replicas=3))
    async with Node({namespace: [inventory]}, nats=options, config=safe) as node:
        assert node.status().state == "running"
