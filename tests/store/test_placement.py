"""One contract for every placement: the in-memory twin and the KV buckets claim, take over, hand over and
release leases the same way."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from nats.aio.client import Client as NATS

from radix.errors import KeyChangedError, LeaseHeldError
from radix.store import InMemoryLeaseTable, InMemoryPlacement, KVPlacement, Owner, Placement
from radix.wire.control import NodeRecord

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
        claim = await one.acquire("shop.Cart.c1")
        assert claim.epoch > 0
        assert not claim.taken_over
        owner = await one.read("shop.Cart.c1", leader=True)
        assert owner == Owner("n1", one.incarnation, claim.epoch)
        assert one.is_me(owner)
        assert await one.acquire("shop.Cart.c1") == claim

    async def test_a_lease_held_by_a_live_node_is_refused_naming_it(self, nodes: tuple[Placement, Placement]) -> None:
        """Another live node cannot claim a held lease; the refusal names the owner, to forward to."""
        one, two = nodes
        claim = await one.acquire("shop.Cart.c1")
        with pytest.raises(LeaseHeldError) as held:
            await two.acquire("shop.Cart.c1")
        assert (held.value.node, held.value.incarnation, held.value.revision) == ("n1", one.incarnation, claim.epoch)
        assert not two.is_me(Owner("n1", one.incarnation, claim.epoch))

    async def test_a_lease_is_handed_over_at_its_epoch_only(self, nodes: tuple[Placement, Placement]) -> None:
        """A handover names the target at a new revision, which the target then holds; from a stale epoch it
        is refused."""
        one, two = nodes
        claim = await one.acquire("shop.Cart.c1")
        moved = await one.transfer("shop.Cart.c1", claim.epoch, record_of(two))
        assert moved > claim.epoch
        assert await two.read("shop.Cart.c1", leader=True) == Owner("n2", two.incarnation, moved)
        taken = await two.acquire("shop.Cart.c1")
        assert (taken.epoch, taken.taken_over) == (moved, False)
        with pytest.raises(KeyChangedError):
            await one.transfer("shop.Cart.c1", claim.epoch, record_of(one))

    async def test_a_release_at_the_epoch_frees_the_lease(self, nodes: tuple[Placement, Placement]) -> None:
        """A release at an old epoch changes nothing; at the owner's epoch the lease is free for anyone."""
        one, two = nodes
        claim = await one.acquire("shop.Cart.c1")
        await one.release("shop.Cart.c1", claim.epoch - 1)
        assert await two.read("shop.Cart.c1", leader=True) is not None
        await one.release("shop.Cart.c1", claim.epoch)
        assert await two.read("shop.Cart.c1", leader=True) is None
        claimed = await two.acquire("shop.Cart.c1")
        assert claimed.epoch > claim.epoch
        assert not claimed.taken_over

    async def test_the_lease_of_a_node_gone_is_taken_over(self, nodes: tuple[Placement, Placement]) -> None:
        """Once its owner's liveness is gone, a lease is taken over, and the claim says so."""
        one, two = nodes
        claim = await one.acquire("shop.Cart.c1")
        await one.deregister()
        taken = await two.acquire("shop.Cart.c1")
        assert taken.epoch > claim.epoch
        assert taken.taken_over
        assert await two.read("shop.Cart.c1", leader=True) == Owner("n2", two.incarnation, taken.epoch)


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
