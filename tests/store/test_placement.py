"""One contract for every placement: the in-memory twin and the KV buckets claim, take over, hand over and
release leases the same way; and what only the KV placement does (shard counts, presuming a node dead)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from radix.errors import KeyChangedError, LeaseHeldError, RadixError
from radix.store import InMemoryLeaseTable, InMemoryPlacement, KVPlacement, Owner, Placement
from radix.testing.conditions import eventually
from radix.wire.control import NodeRecord
from radix.wire.names import node_inbox_filter

Make = Callable[[str], Awaitable[Placement]]


def record_of(placement: Placement) -> NodeRecord:
    return NodeRecord(placement.node_id, placement.incarnation, ["shop"], "")


class PlacementContract:
    """The behaviour every `Placement` must have; subclasses provide `make`, one node's placement by id."""

    @pytest.fixture
    async def nodes(self, make: Make) -> AsyncIterator[tuple[Placement, Placement]]:
        one, two = await make("n1"), await make("n2")
        await one.register()
        await two.register()
        yield one, two
        await one.deregister()
        await two.deregister()

    async def test_a_free_lease_is_claimed(self, nodes: tuple[Placement, Placement]) -> None:
        """The first to claim a lease owns it; its revision is the owner's epoch, and claiming again keeps it."""
        one, _ = nodes
        assert one.liveness_fresh()
        claim = await one.acquire("shop.1")
        assert claim.epoch > 0
        assert not claim.taken_over
        owner = await one.read("shop.1", leader=True)
        assert owner == Owner("n1", one.incarnation, claim.epoch)
        assert one.is_me(owner)
        assert await one.acquire("shop.1") == claim

    async def test_a_lease_held_by_a_live_node_is_refused_naming_it(self, nodes: tuple[Placement, Placement]) -> None:
        """Another live node cannot claim a held lease; the refusal names the owner, to forward to."""
        one, two = nodes
        claim = await one.acquire("shop.1")
        with pytest.raises(LeaseHeldError) as held:
            await two.acquire("shop.1")
        assert (held.value.node, held.value.incarnation, held.value.revision) == ("n1", one.incarnation, claim.epoch)
        assert not two.is_me(Owner("n1", one.incarnation, claim.epoch))

    async def test_a_lease_is_handed_over_at_its_epoch_only(self, nodes: tuple[Placement, Placement]) -> None:
        """A handover names the target at a new revision, which the target then holds; from a stale epoch it
        is refused."""
        one, two = nodes
        claim = await one.acquire("shop.1")
        moved = await one.transfer("shop.1", claim.epoch, record_of(two))
        assert moved > claim.epoch
        assert await two.read("shop.1", leader=True) == Owner("n2", two.incarnation, moved)
        taken = await two.acquire("shop.1")
        assert (taken.epoch, taken.taken_over) == (moved, False)
        with pytest.raises(KeyChangedError):
            await one.transfer("shop.1", claim.epoch, record_of(one))

    async def test_a_release_at_the_epoch_frees_the_lease(self, nodes: tuple[Placement, Placement]) -> None:
        """A release at an old epoch changes nothing; at the owner's epoch the lease is free for anyone."""
        one, two = nodes
        claim = await one.acquire("shop.1")
        await one.release("shop.1", claim.epoch - 1)
        assert await two.read("shop.1", leader=True) is not None
        await one.release("shop.1", claim.epoch)
        assert await two.read("shop.1", leader=True) is None
        claimed = await two.acquire("shop.1")
        assert claimed.epoch > claim.epoch
        assert not claimed.taken_over

    async def test_the_lease_of_a_node_gone_is_taken_over(self, nodes: tuple[Placement, Placement]) -> None:
        """Once its owner's liveness is gone, a lease is taken over, and the claim says so; the lease stays
        fenced through a handover, and the new holder's claim says so too."""
        one, two = nodes
        claim = await one.acquire("shop.1")
        await one.deregister()
        taken = await two.acquire("shop.1")
        assert taken.epoch > claim.epoch
        assert taken.taken_over
        assert await two.read("shop.1", leader=True) == Owner("n2", two.incarnation, taken.epoch, fenced=True)
        await one.register()
        handed = await two.transfer("shop.1", taken.epoch, record_of(one), fenced=True)
        assert await one.acquire("shop.1") == (handed, True)  # fenced still: the former owner may be writing


class TestInMemoryPlacement(PlacementContract):
    @pytest.fixture
    def make(self) -> Make:
        table = InMemoryLeaseTable()

        async def make(node_id: str) -> Placement:
            return InMemoryPlacement(table, node_id, ["shop"])

        return make


class TestKVPlacement(PlacementContract):
    @pytest.fixture
    def make(self, nc: NATS, namespace: str) -> Make:
        async def make(node_id: str) -> Placement:
            placement = KVPlacement(nc, namespace, node_id, ["shop"], ttl=5, replicas=1, timeout=2.0)
            await placement.open()
            return placement

        return make


class TestKVPlacementOnly:
    """What only the KV placement does: agree on shard counts, and presume a node dead from its inbox."""

    @pytest.fixture
    async def nodes(self, nc: NATS, namespace: str) -> AsyncIterator[tuple[KVPlacement, KVPlacement]]:
        one, two = (KVPlacement(nc, namespace, n, ["shop"], ttl=5, replicas=1, timeout=2.0) for n in ("n1", "n2"))
        watches = []
        for placement in (one, two):
            await placement.open()
            watches.append(asyncio.create_task(placement.watch_nodes()))
            await placement.register()
        await eventually(lambda: "n2" in one.nodes and "n1" in two.nodes, what="both nodes seen")
        yield one, two
        for task in watches:
            task.cancel()
        await asyncio.gather(*watches, return_exceptions=True)

    async def test_the_first_node_records_the_shard_count_and_later_ones_agree(
        self, nodes: tuple[KVPlacement, KVPlacement]
    ) -> None:
        """The first node's count (configured, else the default) is recorded; a later node unconfigured
        takes it, and one configured otherwise is refused, naming both counts and what to do."""
        one, two = nodes
        assert await one.agree_shards("shop", None, 1024) == 1024
        assert await two.agree_shards("shop", None, 16) == 1024
        assert await two.agree_shards("shop", 1024, 16) == 1024
        with pytest.raises(RadixError, match=r"has 1024 shards recorded, and this node is configured for 64"):
            await two.agree_shards("shop", 64, 1024)
        assert await two.agree_shards("cart", 64, 1024) == 64
        assert await one.agree_shards("cart", None, 1024) == 64

    async def test_a_node_nobody_listens_for_is_presumed_dead_and_told(
        self, nodes: tuple[KVPlacement, KVPlacement]
    ) -> None:
        """Nobody listens on n2's inbox: n1 deletes n2's liveness key, and n2, seeing that in its watch,
        is told it was evicted, and no longer counts its liveness fresh."""
        one, two = nodes
        evicted = asyncio.Event()
        two.on_evicted = evicted.set
        assert await one.presume_dead("n2", delay=0.05)
        assert "n2" not in one.nodes
        assert (await one.nodes_kv.get("n2", leader=True)).value is None
        await asyncio.wait_for(evicted.wait(), 5)
        assert not two.liveness_fresh()

    @pytest.mark.parametrize("answers", [True, False])
    async def test_a_node_that_listens_is_not_presumed_dead(
        self, nodes: tuple[KVPlacement, KVPlacement], nc: NATS, namespace: str, answers: bool
    ) -> None:
        """A node that answers its probe, or listens without answering (paused, busy), keeps its liveness."""
        one, _ = nodes

        async def probed(msg: Msg) -> None:
            if answers:
                await msg.respond(b"")

        inbox = await nc.subscribe(node_inbox_filter(namespace, "n2"), cb=probed)
        await nc.flush()
        assert not await one.presume_dead("n2", delay=0.05)
        assert (await one.nodes_kv.get("n2", leader=True)).value is not None
        await inbox.unsubscribe()
