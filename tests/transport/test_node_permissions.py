"""A node's own NATS user, allowed only what a node does (`radix.runtime.permissions`), on a real nats-server:
two nodes serve a namespace, move an aggregate, run a reaction and a projection and drain, and the server
refuses them nothing. The check is the server's own log: it logs every refusal with the user refused, even
one the client never notices (a subscription refused, a flow control reply dropped).
"""

from __future__ import annotations

import asyncio
import json
import re
from contextlib import AsyncExitStack
from pathlib import Path

import nats
import nats.errors
import pytest
from nats.aio.msg import Msg

from radix import (
    BoundedContext,
    Client,
    CommandRejectedError,
    ConnectOptions,
    EmbeddedNats,
    Node,
    NodeConfig,
    PlacementConfig,
    Record,
    Send,
    StoreConfig,
    reaction,
    wire,
)
from radix.errors import RadixError
from radix.examples.inventory import CheckIn, CreateItem, InventoryItem, ItemCreated, Remove
from radix.examples.inventory import inventory as plain_inventory
from radix.examples.restock import restock, stock
from radix.runtime.config import ActorConfig, ProcessingConfig
from radix.runtime.node import NodeState
from radix.runtime.permissions import Permissions, client_permissions, monitor_permissions, node_permissions
from radix.store.parked import ParkedStore
from radix.store.views import open_kv
from radix.testing import eventually
from radix.wire.names import PING, Address, node_subject

NAMESPACE = "shop"
NODE_PASSWORD = "n-secret"
CLIENT_PASSWORD = "s-secret"

PARTITIONS = 2

failed_once: set[str] = set()
"""The items whose creation `flaky` has failed on."""


@reaction("flaky", on=[ItemCreated], attempts=1)
def flaky(record: Record[ItemCreated]) -> list[Send]:
    """Fails on the creation of an item named `p-...` the first time, so that the event is parked."""
    if record.aggregate_id.startswith("p-") and record.aggregate_id not in failed_once:
        failed_once.add(record.aggregate_id)
        raise RuntimeError("failing once, to be parked")
    return []


inventory = BoundedContext("inventory", [InventoryItem()], reactions=[restock, flaky], projections=[stock])
"""The inventory example with its restock reaction and stock projection (radix.examples.restock), and `flaky`."""


def authorization(node: Permissions, log: Path) -> str:
    """Server configuration: users `node` (allowed `node`) and `shop` (a client's rights), each given as
    `radix permissions` prints them, and the log written to `log`."""
    client, monitor = client_permissions(NAMESPACE), monitor_permissions(NAMESPACE)
    return (
        f"log_file: {json.dumps(str(log))}\n"
        f'authorization {{ users: [\n{{ user: "node", password: "{NODE_PASSWORD}", {node.config()} }}\n'
        f'{{ user: "shop", password: "{CLIENT_PASSWORD}", {client.config()} }}\n'
        f'{{ user: "watch", password: "{CLIENT_PASSWORD}", {monitor.config()} }}\n] }}\n'
    )


#: How the server logs a refusal: `... - "$G/user:node" - Publish Violation - Subject "...", ...` (and
#: `Subscription Violation`); the `-ERR` it sends the client says "Permissions Violation for ...".
REFUSAL = re.compile(r"(Publish|Subscription|Permissions) Violation")


def refusals(log: Path, user: str) -> list[str]:
    """The lines of the server's log saying that it refused `user` a publish or a subscription."""
    lines = log.read_text(errors="replace").splitlines()
    return [line for line in lines if REFUSAL.search(line) and f'/user:{user}"' in line]


def node_config(node_id: str, *, store: StoreConfig | None = None, actors: ActorConfig | None = None) -> NodeConfig:
    return NodeConfig(
        node_id=node_id,
        placement=PlacementConfig(liveness_ttl=2, rebalance_batch=0),  # no rebalancing: the moves are the test's
        processing=ProcessingConfig(partitions=PARTITIONS, interval=0.2, retry_delay=0.05),
        store=store or StoreConfig(),
        actors=actors or ActorConfig(),
    )


async def test_a_node_serves_migrates_and_drains_with_only_the_node_permissions(tmp_path: Path) -> None:
    """Two nodes given `node_permissions` and nothing more take commands and reads from a client with command
    rights only, forward, move an aggregate, run a reaction and a projection, and hand everything over in a
    drain, and the server refuses neither them nor the client anything."""
    log = tmp_path / "nats.log"
    with EmbeddedNats(extra_config=authorization(node_permissions(NAMESPACE, [inventory]), log)) as server:
        node_options = ConnectOptions(servers=[server.url], user="node", password=NODE_PASSWORD)
        client_errors: list[Exception] = []

        async def on_client_error(error: Exception) -> None:
            client_errors.append(error)

        async with AsyncExitStack() as stack:
            nc = await nats.connect(server.url, user="shop", password=CLIENT_PASSWORD, error_cb=on_client_error)
            stack.push_async_callback(nc.close)
            client = Client(nc, inventory, namespace=NAMESPACE)
            watch = await nats.connect(server.url, user="watch", password=CLIENT_PASSWORD, error_cb=on_client_error)
            stack.push_async_callback(watch.close)
            watched: list[str] = []

            async def seen(msg: Msg) -> None:
                watched.append(msg.subject.split(".")[3])

            for kind in ("evt", "log"):
                await watch.subscribe(f"radix.{NAMESPACE}.*.{kind}.>", cb=seen)
            # n1 reads a commit at a time, so a history of more than one is replayed with an ordered consumer
            # (as a long one is); n2 writes no snapshots, so that n1 replays w-1 after the drain.
            one = Node(
                {NAMESPACE: [inventory]},
                nats=node_options,
                config=node_config("n1", store=StoreConfig(batch=1, ordered_consumer_above=1)),
            )
            await stack.enter_async_context(one)
            w = address("w-1")
            assert (await client.send(CreateItem(name="widget"), aggregate_id="w-1")).version == 1
            assert (await client.send(CheckIn(count=3), aggregate_id="w-1")).version == 2
            assert one.is_live(w)
            read = await client.read("InventoryItem", "w-1")
            assert (read.version, read.state.count) == (2, 3)
            with pytest.raises(CommandRejectedError):  # kept in the refusals bucket, for a retry's answer
                await client.send(Remove(count=4), aggregate_id="w-1")
            # Accepted commands are logged by their commits; the rejection is an entry of the log stream.
            await eventually(lambda: {"evt", "log"} <= set(watched), what="the monitor seeing an event and a log entry")

            two = Node(
                {NAMESPACE: [inventory]},
                nats=node_options,
                config=node_config("n2", actors=ActorConfig(snapshot_every=0)),
            )
            await stack.enter_async_context(two)
            await eventually(lambda: live_nodes(one) == {"n1", "n2"}, what="n1 seeing n2")
            assert await one.migrate(w, to="n2") == wire.ControlAnswer(ok=True, to="n2", ended="moved")
            # Those of these that reach n1 are forwarded to n2; the state moved with the aggregate.
            for n in range(12):
                assert (await client.send(CheckIn(count=1), aggregate_id="w-1")).version == 3 + n
            assert two.is_live(w)
            assert not one.is_live(w)
            items = [address(f"i-{i}") for i in range(4)]
            for item in items:
                assert (await client.send(CreateItem(name="item"), aggregate_id=item.aggregate_id)).version == 1
            await eventually(lambda: bool(owned(one)) and bool(owned(two)), what="both nodes owning feed partitions")

            # A large removal is answered by the restock reaction (a check-in of twice as many), and the stock
            # projection keeps each item's count in its KV view.
            assert (await client.send(Remove(count=5), aggregate_id="w-1")).version == 15

            async def restocked() -> bool:
                return bool((await client.read("InventoryItem", "w-1")).state.count == 3 + 12 - 5 + 10)

            await eventually(restocked, timeout=20, what="the restock reaction's check-in")
            view = await open_kv(NAMESPACE, "inventory", "stock", one.nc)

            async def projected() -> bool:
                return bool(await view.get("w-1") == {"name": "widget", "count": 20})

            await eventually(projected, timeout=20, what="the stock projection")

            # An event `flaky` fails on is parked; retried (as `radix parked retry` asks, here on n1's
            # connection, which may write the bucket), it is read again from the feed and handled.
            assert (await client.send(CreateItem(name="part"), aggregate_id="p-1")).version == 1
            parked = ParkedStore(one.nc)

            async def parked_once() -> bool:
                return len(await parked.of(NAMESPACE, "inventory", "flaky")) == 1

            await eventually(parked_once, timeout=20, what="the event flaky failed on parked")
            await parked.mark(NAMESPACE, await parked.of(NAMESPACE, "inventory", "flaky"), retry=True)

            async def released() -> bool:
                return await parked.of(NAMESPACE, "inventory", "flaky") == []

            await eventually(released, timeout=20, what="the parked event handled when retried")

            # A drain of n2 hands its aggregates and its partitions to n1, which serves them on.
            held = [a for a in (w, *items) if two.is_live(a)]
            assert w in held
            await two.drain()
            assert two.state is NodeState.STOPPED
            leases = one.placement(NAMESPACE)

            def handed_over() -> bool:
                return all((o := leases.owner(one.lease_key(a))) is not None and o.node == "n1" for a in held)

            await eventually(handed_over, what="n2's leases handed to n1")
            # The probe that presumes a node dead is allowed: the server says nobody listens on n2's inbox now
            # (a refused publish would time out, and be in the server's log).
            with pytest.raises(nats.errors.NoRespondersError):
                await one.nc.request(node_subject(NAMESPACE, "n2", PING), b"", timeout=10)
            assert (await client.send(CheckIn(count=1), aggregate_id="w-1")).version == 17
            for item in held[1:]:
                assert (await client.send(CheckIn(count=1), aggregate_id=item.aggregate_id)).version == 2
            assert all(one.is_live(a) for a in held)
            processors = [r.name for r in inventory.reactions] + [p.name for p in inventory.projections]
            every = {(name, n) for name in processors for n in range(PARTITIONS)}
            await eventually(lambda: owned(one) == every, what="n1 taking n2's feed partitions over")

            async def projected_by_one() -> bool:
                return bool(await view.get("w-1") == {"name": "widget", "count": 21})

            await eventually(projected_by_one, timeout=20, what="n1 projecting the check-in after the drain")
        # Everything has stopped (deregistering, releasing leases, unsubscribing): the whole run is in the log.
        assert refusals(log, "node") == []
        assert refusals(log, "shop") == []
        assert refusals(log, "watch") == []
        assert client_errors == []


async def test_a_grant_taken_away_is_seen_in_the_servers_log(tmp_path: Path) -> None:
    """Without the grant of `$SRV.PING` a node still starts and serves, so only the server's log tells: the
    check above reads the refusal there, naming the user and the subject."""
    log = tmp_path / "nats.log"
    # The inventory without reactions and projections: this node stops at once, and a node stopped while a feed
    # partition's reader is still opening the parked bucket sometimes waits 10 s for that reader.
    granted = node_permissions(NAMESPACE, [plain_inventory])
    narrower = Permissions(granted.publish, [s for s in granted.subscribe if s != "$SRV.PING"])
    assert len(narrower.subscribe) == len(granted.subscribe) - 1
    with EmbeddedNats(extra_config=authorization(narrower, log)) as server:
        node_options = ConnectOptions(servers=[server.url], user="node", password=NODE_PASSWORD)
        async with Node({NAMESPACE: [plain_inventory]}, nats=node_options, config=node_config("n1")) as node:
            nc = await nats.connect(server.url, user="shop", password=CLIENT_PASSWORD)
            try:
                client = Client(nc, plain_inventory, namespace=NAMESPACE)
                assert (await client.send(CreateItem(name="widget"), aggregate_id="w-1")).version == 1
                assert node.state is NodeState.RUNNING
            finally:
                await nc.close()
            await eventually(lambda: refusals(log, "node") != [], what="the refusal logged")
    [refused] = refusals(log, "node")
    assert 'Subscription Violation - Subject "$SRV.PING"' in refused


def address(aggregate_id: str) -> Address:
    return Address(NAMESPACE, "inventory", "InventoryItem", aggregate_id)


def live_nodes(node: Node) -> set[str]:
    return {r.node for r in node.placement(NAMESPACE).live_nodes("inventory")}


def owned(node: Node) -> set[tuple[str, int]]:
    """The feed partitions (processor, partition) a node reads."""
    return {(r["name"], r["partition"]) for r in node.status().processors}


async def test_a_node_refused_a_watch_does_not_start_and_says_what_to_grant(tmp_path: Path) -> None:
    """Without the grant to create a consumer on the leases bucket a node's watch of its leases is refused
    each time; its start used to wait for that watch for ever. It gives up after a few attempts, naming the
    bucket and the permission to check."""
    granted = node_permissions(NAMESPACE, [plain_inventory])
    leases = f"$JS.API.CONSUMER.CREATE.KV_radix_{NAMESPACE}_leases"
    narrower = Permissions([s for s in granted.publish if s != leases], granted.subscribe)
    assert len(narrower.publish) == len(granted.publish) - 1
    with EmbeddedNats(extra_config=authorization(narrower, tmp_path / "nats.log")) as server:
        node_options = ConnectOptions(servers=[server.url], user="node", password=NODE_PASSWORD)
        config = node_config("n1", store=StoreConfig(timeout=1.0))
        node = Node({NAMESPACE: [plain_inventory]}, nats=node_options, config=config)
        with pytest.raises(RadixError, match=rf"radix_{NAMESPACE}_leases could not be watched .* 3 times\): check"):
            await asyncio.wait_for(node.start(), 60)
        assert node.state is NodeState.STOPPED
