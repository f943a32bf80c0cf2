"""The cluster with several nodes in one process on one real nats-server: routing, leases, migration, fencing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack

import msgspec
import nats
import pytest
from nats.aio.client import Client as NATS

from radix import (
    Address,
    BoundedContext,
    Client,
    ConnectOptions,
    EmbeddedNats,
    JetStreamEventStore,
    Node,
    NodeConfig,
    PlacementConfig,
    RadixError,
    StoreConfig,
    wire,
)
from radix.errors import StoreError, StoreUnavailableError
from radix.examples.inventory import CheckIn, CreateItem, inventory
from radix.runtime.node import NodeState
from radix.store.kv import KVBucket
from radix.store.placement import KVPlacement
from radix.testing import eventually, open_inboxes
from radix.wire import H_COMMAND_ID, H_HOPS, H_REPLY_TO, H_SUBJECT
from radix.wire.names import FORWARD, MIGRATE, command_subject, leases_bucket, node_subject, query_subject
from tests.shows import Book, shows

FAST = {"liveness_ttl": 2, "rebalance_interval": 0.2, "forward_timeout": 0.5}


class Cluster:
    """Nodes in this process, each with its own connection, on one nats-server."""

    def __init__(self, server: EmbeddedNats, namespace: str, stack: AsyncExitStack) -> None:
        self.server = server
        self.namespace = namespace
        self.stack = stack
        self.nodes: dict[str, Node] = {}

    async def start(self, node_id: str, *, contexts: Sequence[BoundedContext] = (inventory,), **config: object) -> Node:
        nc = await nats.connect(self.server.url)
        self.stack.push_async_callback(nc.close)
        settings = {**FAST, **config}
        placement = PlacementConfig(**settings)  # type: ignore[arg-type]  # floats and ints, as FAST has them
        node = Node({self.namespace: list(contexts)}, nats=nc, config=NodeConfig(node_id=node_id, placement=placement))
        await node.start()
        self.stack.push_async_callback(node.stop)
        self.nodes[node_id] = node
        return node

    def address(self, aggregate_id: str) -> Address:
        return Address(self.namespace, "inventory", "InventoryItem", aggregate_id)

    def owner_of(self, aggregate_id: str) -> Node | None:
        return next((n for n in self.nodes.values() if n.is_live(self.address(aggregate_id))), None)

    async def converged(self) -> bool:
        """Every running node's lease cache equals the bucket, and its node list equals the running nodes."""
        running = {i for i, n in self.nodes.items() if n.state is NodeState.RUNNING}
        first = next(n for n in self.nodes.values() if n.state is NodeState.RUNNING)
        bucket = first.placement(self.namespace).leases_kv
        truth: dict[str, tuple[str, str]] = {}
        for key in {k for n in self.nodes.values() for k in n.placement(self.namespace).leases}:
            entry = await bucket.get(key)
            if entry.value is not None:
                value = msgspec.json.decode(entry.value)
                truth[key] = (value["node"], value["incarnation"])
        for node_id in running:
            placement = self.nodes[node_id].placement(self.namespace)
            cached = {k: (o.node, o.incarnation) for k, o in placement.leases.items()}
            if cached != truth or set(placement.nodes) != running:
                return False
        return True


@pytest.fixture
async def cluster(nats_server: EmbeddedNats, namespace: str) -> AsyncIterator[Cluster]:
    async with AsyncExitStack() as stack:
        yield Cluster(nats_server, namespace, stack)


@pytest.fixture
def client(nc: NATS, namespace: str) -> Client:
    return Client(nc, inventory, namespace=namespace)


async def send_raw(nc: NATS, namespace: str, aggregate_id: str, body: bytes) -> tuple[str, dict[str, object]]:
    """Send a command with plain nats-py; return the node that answered (its `Radix-Node` header) and the reply."""
    reply = await nc.request(
        command_subject(Address(namespace, "inventory", "InventoryItem", aggregate_id)), body, timeout=5
    )
    assert reply.headers is not None
    return reply.headers["Radix-Node"], msgspec.json.decode(reply.data)


async def test_commands_reach_the_single_owner(cluster: Cluster, nc: NATS, namespace: str) -> None:
    """Whichever node receives a command, the aggregate's one owner handles it and answers the client itself."""
    for node_id in ("n1", "n2", "n3"):
        await cluster.start(node_id, rebalance_batch=0)  # no shard moves while it counts who answered
    answered_by: dict[str, set[str]] = {}
    for round_ in range(6):
        for i in range(12):
            body = b'{"type": "CreateItem", "name": "x"}' if round_ == 0 else b'{"type": "CheckIn", "count": 1}'
            node, reply = await send_raw(nc, namespace, f"agg-{i}", body)
            assert reply["status"] == "accepted"
            assert reply["version"] == round_ + 1
            answered_by.setdefault(f"agg-{i}", set()).add(node)
    for aggregate_id, nodes in answered_by.items():
        owner = cluster.owner_of(aggregate_id)
        assert owner is not None
        assert nodes == {owner.node_id}
    assert len({next(iter(n)) for n in answered_by.values()}) > 1  # the work is spread
    assert sum(n.counts["accepted"] for n in cluster.nodes.values()) == 72
    await eventually(cluster.converged, what="lease caches converge")


async def test_reads_reach_the_single_owner(cluster: Cluster, client: Client, nc: NATS, namespace: str) -> None:
    """Whichever node receives a read, the aggregate's owner answers it from its live state."""
    for node_id in ("n1", "n2", "n3"):
        await cluster.start(node_id)
    for i in range(6):
        await client.send(CreateItem(name="x"), aggregate_id=f"read-{i}")
        await client.send(CheckIn(count=i + 1), aggregate_id=f"read-{i}")
    for _ in range(3):
        for i in range(6):
            reply = await nc.request(query_subject(cluster.address(f"read-{i}")), b"", timeout=5)
            owner = cluster.owner_of(f"read-{i}")
            assert owner is not None
            assert reply.headers is not None
            assert reply.headers["Radix-Node"] == owner.node_id
            body = msgspec.json.decode(reply.data)
            assert (body["version"], body["state"]) == (2, {"name": "x", "count": i + 1})


async def test_ownership_cache_converges_after_joins_and_leaves(cluster: Cluster, client: Client) -> None:
    """Every node's view of leases and live nodes matches the buckets after joins, moves and leaves."""
    await cluster.start("n1")
    await cluster.start("n2")
    for i in range(10):
        await client.send(CreateItem(name="x"), aggregate_id=f"c-{i}")
    await eventually(cluster.converged, what="convergence with two nodes")
    await cluster.start("n3")
    await eventually(cluster.converged, what="convergence after a join")
    await cluster.nodes["n1"].stop()
    await eventually(cluster.converged, what="convergence after a leave")
    for i in range(10):
        assert (await client.send(CheckIn(count=1), aggregate_id=f"c-{i}")).version == 2


async def test_manual_migration(cluster: Cluster, nc: NATS, namespace: str, client: Client) -> None:
    """An aggregate moved to a named node is served there, with its state and its known command ids."""
    one = await cluster.start("n1")
    await client.send(CreateItem(name="x"), aggregate_id="m-1", command_id="create-m-1")
    await client.send(CheckIn(count=5), aggregate_id="m-1")
    two = await cluster.start("n2", rebalance_batch=0)
    result = await one.migrate(cluster.address("m-1"), to="n2")
    assert result == wire.ControlAnswer(ok=True, to="n2", ended="moved")
    node, reply = await send_raw(nc, namespace, "m-1", b'{"type": "Remove", "count": 5}')
    assert (node, reply["status"], reply["version"]) == ("n2", "accepted", 3)
    again = await client.send(CreateItem(name="x"), aggregate_id="m-1", command_id="create-m-1")
    assert again.version == 1  # the original answer, from the snapshot the move wrote
    assert one.stats.migrations == 1
    assert not one.is_live(cluster.address("m-1"))
    assert two.is_live(cluster.address("m-1"))


async def test_migration_over_the_control_subject(cluster: Cluster, nc: NATS, namespace: str) -> None:
    """`radix.{ns}._node.{id}.migrate` moves an aggregate, as `radix migrate` does."""
    await cluster.start("n1")
    await cluster.start("n2", rebalance_batch=0)
    node, _ = await send_raw(nc, namespace, "m-2", b'{"type": "CreateItem", "name": "x"}')
    other = "n2" if node == "n1" else "n1"
    request = {"context": "inventory", "aggregate_type": "InventoryItem", "aggregate_id": "m-2", "to": other}
    reply = await nc.request(node_subject(namespace, node, MIGRATE), msgspec.json.encode(request), timeout=5)
    assert msgspec.json.decode(reply.data)["ok"] is True
    assert (await send_raw(nc, namespace, "m-2", b'{"type": "CheckIn", "count": 1}'))[0] == other


async def test_a_stale_owner_is_fenced_and_steps_down(cluster: Cluster, nc: NATS, namespace: str) -> None:
    """A node that still believes it owns an aggregate has its append refused, steps down and forwards."""
    one = await cluster.start("n1", rebalance_batch=0)
    two = await cluster.start("n2", rebalance_batch=0)
    for n, body in enumerate((b'{"type": "CreateItem", "name": "x"}', b'{"type": "CheckIn", "count": 1}')):
        await nc.request(
            node_subject(namespace, "n1", FORWARD), body, headers=forward_headers(namespace, "z-1", f"a{n}")
        )
    await eventually(lambda: one.is_live(cluster.address("z-1")), what="n1 owning z-1")
    # n1 is presumed dead: n2 takes the lease over, and appends.
    await presume_dead(nc, namespace, cluster.address("z-1"), one, two)
    inbox = nc.new_inbox()
    replies = await nc.subscribe(inbox, max_msgs=2)
    await nc.publish(
        node_subject(namespace, "n2", FORWARD),
        b'{"type": "CheckIn", "count": 2}',
        headers=forward_headers(namespace, "z-1", "b", inbox),
    )
    first = await replies.next_msg(timeout=5)
    assert first.headers is not None
    assert first.headers["Radix-Node"] == "n2"
    assert msgspec.json.decode(first.data)["version"] == 3
    # n1 is stale (it still has z-1 live at version 2): its append must be refused.
    await nc.publish(
        node_subject(namespace, "n1", FORWARD),
        b'{"type": "CheckIn", "count": 3}',
        headers=forward_headers(namespace, "z-1", "c", inbox),
    )
    second = await replies.next_msg(timeout=5)
    assert second.headers is not None
    assert second.headers["Radix-Node"] == "n2"
    assert msgspec.json.decode(second.data)["version"] == 4
    assert one.stats.fenced == 1
    assert not one.is_live(cluster.address("z-1"))
    async with JetStreamEventStore(nc) as store:
        commits = await store.read(cluster.address("z-1"))
    events = [e for c in commits for e in c.events]
    assert [e.version for e in events] == [1, 2, 3, 4]
    assert [e.command_id for e in events] == ["a0", "a1", "b", "c"]


async def presume_dead(nc: NATS, namespace: str, address: Address, owner: Node, taker: Node) -> None:
    """Make the aggregate's lease name its owner under an incarnation that is no longer live, as `taker`
    sees it once the owner's liveness expired: the taker's next command for it takes the lease over. The
    owner, which did not stop, still holds the aggregate live: a zombie owner."""
    key = owner.lease_key(address)
    leases = KVBucket(nc, leases_bucket(namespace))
    entry = await leases.get(key)
    value = {"node": owner.node_id, "incarnation": "gone"}
    await leases.put_if(key, msgspec.json.encode(value), revision=entry.revision)
    seen = taker.placement(namespace).leases
    await eventually(lambda: key in seen and seen[key].incarnation == "gone", what=f"{taker.node_id} seeing it")


async def forwarder(
    nc: NATS, namespace: str, aggregate_id: str
) -> Callable[[str, str, bytes], Awaitable[dict[str, object]]]:
    """Send an aggregate's commands straight to a node (as forwarded), and return each reply."""
    inbox = nc.new_inbox()
    replies = await nc.subscribe(inbox)

    async def forward(node: str, command_id: str, body: bytes) -> dict[str, object]:
        headers = forward_headers(namespace, aggregate_id, command_id, inbox)
        await nc.publish(node_subject(namespace, node, FORWARD), body, headers=headers)
        reply: dict[str, object] = msgspec.json.decode((await replies.next_msg(timeout=5)).data)
        return reply

    return forward


def forward_headers(namespace: str, aggregate_id: str, command_id: str, reply_to: str = "") -> dict[str, str]:
    return {
        H_SUBJECT: command_subject(Address(namespace, "inventory", "InventoryItem", aggregate_id)),
        H_REPLY_TO: reply_to,
        H_HOPS: "1",
        H_COMMAND_ID: command_id,
    }


async def test_a_joining_node_receives_a_share(cluster: Cluster, client: Client) -> None:
    """Live aggregates spread to a node that joins, and keep accepting commands wherever they land."""
    one = await cluster.start("n1")
    for i in range(30):
        await client.send(CreateItem(name="x"), aggregate_id=f"j-{i}")
    assert one.live_actors == 30
    two = await cluster.start("n2")

    def n2_share() -> int:
        return two.placement(cluster.namespace).counts("inventory").get("n2", 0)

    await eventually(lambda: n2_share() >= 10, what="n2 holding a share of the leases")
    for i in range(30):
        assert (await client.send(CheckIn(count=1), aggregate_id=f"j-{i}")).version == 2
    assert two.live_actors == n2_share()
    assert one.live_actors + two.live_actors == 30


async def test_drain_under_load_loses_nothing(cluster: Cluster, client: Client, nc: NATS, namespace: str) -> None:
    """Draining a node while commands flow: every command is accepted, histories stay contiguous."""
    one = await cluster.start("n1", rebalance_batch=0)
    await cluster.start("n2", rebalance_batch=0)
    ids = [f"d-{i}" for i in range(20)]
    for aggregate_id in ids:
        await client.send(CreateItem(name="x"), aggregate_id=aggregate_id)
    sent: dict[str, int] = dict.fromkeys(ids, 1)
    stop = asyncio.Event()
    failures: list[BaseException] = []

    async def load(aggregate_id: str) -> None:
        while not stop.is_set():
            try:
                result = await client.send(CheckIn(count=1), aggregate_id=aggregate_id, timeout=15)
            except Exception as e:
                failures.append(e)
                return
            sent[aggregate_id] = result.version

    loaders = [asyncio.create_task(load(i)) for i in ids]
    await eventually(lambda: min(sent.values()) >= 3, what="load running")
    moved_live = one.live_actors
    await one.drain()
    at_drain = dict(sent)
    await eventually(lambda: all(sent[i] >= at_drain[i] + 2 for i in ids), what="load continuing after the drain")
    stop.set()
    await asyncio.gather(*loaders)
    assert failures == []
    assert one.stats.migrations == moved_live > 0
    assert len(one.stats.pauses) == moved_live
    async with JetStreamEventStore(nc) as store:
        for aggregate_id in ids:
            commits = await store.read(cluster.address(aggregate_id))
            assert [c.version for c in commits] == list(range(1, sent[aggregate_id] + 1))


async def test_a_node_id_in_use_is_refused(cluster: Cluster) -> None:
    """A second node with the id of a live node waits for it to expire, then refuses to start, saying why."""
    first = await cluster.start("same", liveness_ttl=1)
    nc = await nats.connect(cluster.server.url)
    await open_inboxes(nc)
    tasks_before = asyncio.all_tasks()
    second = Node(
        {cluster.namespace: [inventory]},
        nats=nc,
        config=NodeConfig(node_id="same", placement=PlacementConfig(liveness_ttl=1)),
    )
    with pytest.raises(RadixError, match="node id 'same' is in use"):
        await second.start()
    # The failed start left nothing running (nats-py finishes cancelled subscriptions a moment later).
    await eventually(lambda: asyncio.all_tasks() <= tasks_before, timeout=2, what="no task left")
    await nc.close()
    assert first.placement(cluster.namespace).liveness_fresh()


async def test_a_server_without_jetstream_is_refused() -> None:
    """A node on a NATS without JetStream refuses to start and says how to fix it."""
    async with EmbeddedNats(jetstream=False) as plain:
        with pytest.raises(RadixError, match=r"JetStream is not available on this NATS: enable it on the servers"):
            await Node({"ns": [inventory]}, nats=ConnectOptions(servers=[plain.url])).start()


async def test_replicas_a_single_server_cannot_hold_are_refused_clearly(nats_server: EmbeddedNats) -> None:
    """Three replicas asked of a NATS that is no cluster: the node refuses to start with JetStream's reason."""
    node = Node(
        {"ns": [inventory]},
        nats=ConnectOptions(servers=[nats_server.url]),
        config=NodeConfig(store=StoreConfig(replicas=3)),
    )
    with pytest.raises(
        StoreError, match=r"JetStream refused to create bucket radix_ns_\w+: replicas > 1 not supported"
    ):
        await node.start()


async def test_a_node_takes_a_new_incarnation_only_once_registered(
    nc: NATS, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Registering again after lost liveness: if the write fails, the node keeps its old incarnation, so
    it never names an incarnation that is not live in a lease."""
    placement = KVPlacement(nc, namespace, "n9", ["inventory"], ttl=2, replicas=1, timeout=1.0)
    await placement.open()
    await placement.register()
    before = placement.incarnation
    real_put_if = placement.nodes_kv.put_if

    async def unavailable(*args: object, **kwargs: object) -> int:
        raise StoreUnavailableError("JetStream did not answer")

    monkeypatch.setattr(placement.nodes_kv, "put_if", unavailable)
    with pytest.raises(StoreUnavailableError):
        await placement.reregister()
    assert placement.incarnation == before
    monkeypatch.setattr(placement.nodes_kv, "put_if", real_put_if)
    await placement.reregister()
    assert placement.incarnation != before
    entry = await placement.nodes_kv.get("n9")
    assert entry.value is not None
    assert msgspec.json.decode(entry.value)["incarnation"] == placement.incarnation
    await placement.deregister()


async def test_a_refusal_holds_after_a_takeover(cluster: Cluster, nc: NATS, namespace: str) -> None:
    """A command refused by one owner, sent again after another node took the aggregate over, gets the same
    refusal, even though the new state would accept it."""
    one = await cluster.start("n1", rebalance_batch=0)
    two = await cluster.start("n2", rebalance_batch=0)
    forward = await forwarder(nc, namespace, "r-1")
    assert (await forward("n1", "make", b'{"type": "CreateItem", "name": "x"}'))["status"] == "accepted"
    assert (await forward("n1", "take", b'{"type": "Remove", "count": 5}'))["status"] == "rejected"
    # n1 is presumed dead; n2 takes the aggregate over and stocks the item.
    await presume_dead(nc, namespace, cluster.address("r-1"), one, two)
    assert (await forward("n2", "stock", b'{"type": "CheckIn", "count": 10}'))["status"] == "accepted"
    again = await forward("n2", "take", b'{"type": "Remove", "count": 5}')
    assert again["status"] == "rejected"
    assert again["reason"] == "cannot remove 5: only 0 in stock"


async def test_a_zombie_owner_gives_no_refusal_after_a_takeover(cluster: Cluster, nc: NATS, namespace: str) -> None:
    """Once another node took the aggregate over, even without writing an event, the former owner (which
    did not notice) can no longer refuse: its refusal is not recorded, so it answers an error, and the
    command, sent again, is decided by the new owner alone."""
    one = await cluster.start("n1", rebalance_batch=0)
    two = await cluster.start("n2", rebalance_batch=0)
    forward = await forwarder(nc, namespace, "r-2")
    assert (await forward("n1", "make", b'{"type": "CreateItem", "name": "x"}'))["status"] == "accepted"
    await presume_dead(nc, namespace, cluster.address("r-2"), one, two)
    # The resent "make" activates r-2 on n2 (a takeover) and is answered from its commit: nothing is written.
    assert (await forward("n2", "make", b'{"type": "CreateItem", "name": "x"}'))["status"] == "accepted"
    assert one.is_live(cluster.address("r-2"))
    zombie = await forward("n1", "take", b'{"type": "Remove", "count": 5}')
    assert zombie["status"] == "error"
    assert "could not be recorded" in str(zombie["reason"])
    assert (await forward("n2", "stock", b'{"type": "CheckIn", "count": 10}'))["status"] == "accepted"
    assert (await forward("n2", "take", b'{"type": "Remove", "count": 5}'))["status"] == "accepted"


async def test_lease_counts_follow_claims_handoffs_and_releases(nc: NATS, namespace: str) -> None:
    """The per-node lease counts that drains and rebalancing use stay equal to a count of the cached
    leases through claims, handoffs and releases, as both nodes see them through their watches."""
    one = KVPlacement(nc, namespace, "n1", ["inventory"], ttl=5, replicas=1, timeout=2.0)
    two = KVPlacement(nc, namespace, "n2", ["inventory"], ttl=5, replicas=1, timeout=2.0)
    placements = (one, two)
    async with asyncio.TaskGroup() as tasks:
        for p in placements:
            await p.open()
            await p.register()
        watches = [tasks.create_task(w) for p in placements for w in (p.watch_nodes(), p.watch_leases())]
        claims = {f"inventory.{i}": await one.acquire(f"inventory.{i}") for i in range(6)}
        await eventually(lambda: len(one.live_nodes("inventory")) == 2, what="n1 seeing n2")
        target = next(r for r in one.live_nodes("inventory") if r.node == "n2")
        for key in ("inventory.0", "inventory.1"):
            await one.transfer(key, claims[key].epoch, target)
        await one.release("inventory.2", claims["inventory.2"].epoch)
        await two.acquire("inventory.99")

        def recount(p: KVPlacement) -> dict[str, int]:
            counted = dict.fromkeys(("n1", "n2"), 0)
            for key, owner in p.leases.items():
                if key.startswith("inventory."):
                    counted[owner.node] += 1
            return counted

        expected = {"n1": 3, "n2": 3}
        await eventually(lambda: all(p.counts("inventory") == expected for p in placements), what="counts")
        for p in placements:
            assert p.counts("inventory") == recount(p)
        for task in watches:
            task.cancel()
    for p in placements:
        await p.deregister()


async def test_a_placement_group_moves_whole_and_is_never_split(cluster: Cluster, nc: NATS, namespace: str) -> None:
    """The seats of one show live on one node; moving one seat moves its shard with every live seat of the
    show, and a drain then moves them all back together; they keep their histories throughout."""
    one = await cluster.start("n1", contexts=[shows], rebalance_batch=0)
    client = Client(nc, shows, namespace=namespace)
    seats = [f"show-1=s{i}" for i in range(6)]
    for seat in seats:
        await client.send(Book(), aggregate_id=seat)
    two = await cluster.start("n2", contexts=[shows], rebalance_batch=0)

    def where() -> set[str]:
        return {n.node_id for n in (one, two) for s in seats if n.is_live(Address(namespace, "shows", "Seat", s))}

    assert where() == {"n1"}
    assert (await one.migrate(Address(namespace, "shows", "Seat", seats[0]), to="n2")).ok
    assert where() == set()  # every seat ended on n1 before the shard moved; n2 activates them on demand
    for seat in seats:
        assert (await client.send(Book(), aggregate_id=seat)).version == 2
    assert where() == {"n2"}
    await two.drain()
    assert where() == set()
    for seat in seats:
        assert (await client.send(Book(), aggregate_id=seat)).version == 3
    assert where() == {"n1"}
    assert one.status().shards == {f"{namespace}/shows": 1}
