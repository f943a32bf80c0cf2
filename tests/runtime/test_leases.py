"""The node's side of its shard leases (`NodeLeases`), on the in-memory placement: one claim per shard, a
handover that waits for every live actor of the shard, and what each way an actor can end does to the
lease."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass

import pytest

from radix import StoreUnavailableError
from radix.errors import LeaseHeldError
from radix.examples.inventory import inventory
from radix.runtime.actor import Ending
from radix.runtime.hosting import Hosting
from radix.runtime.leases import NodeLeases
from radix.runtime.mailbox import Move
from radix.store import InMemoryLeaseTable, InMemoryPlacement, Owner
from radix.testing import eventually
from radix.wire.names import Address
from tests.shows import shows

HOSTING = Hosting({"ns": [shows]})


@dataclass(eq=False)
class Holder:
    """An actor, as its lease sees it."""

    address: Address
    epoch: int = 0
    revoked: bool = False


def seat(seat_id: str, show: str = "show-1") -> Holder:
    return Holder(Address("ns", "shows", "Seat", f"{show}={seat_id}"))


def other_shard(holder: Holder) -> Holder:
    """A seat of another show, in another shard than `holder`'s."""
    key = HOSTING.lease_key(holder.address)
    return next(h for n in range(100) if HOSTING.lease_key((h := seat("a1", f"show-{n}")).address) != key)


def under_way(leases: NodeLeases, key: str) -> bool:
    """Whether a move of the shard has begun (its lease held, with a handover under way)."""
    lease = leases._leases("ns").get(key)
    return lease is not None and lease.moving is not None


def reached(leases: NodeLeases, key: str, holder: Holder) -> bool:
    """Whether `holder` has reached the handover of the shard's move under way."""
    lease = leases._leases("ns").get(key)
    return lease is not None and lease.moving is not None and holder not in lease.moving.waiting


async def always_live(namespace: str) -> bool:
    return True


@pytest.fixture
async def placements() -> tuple[InMemoryPlacement, InMemoryPlacement]:
    table = InMemoryLeaseTable()
    here, there = InMemoryPlacement(table, "here"), InMemoryPlacement(table, "there")
    await here.register()
    await there.register()
    return here, there


def leases_of(placement: InMemoryPlacement) -> NodeLeases:
    return NodeLeases({"ns": placement}, HOSTING, renew=always_live, pace=asyncio.Semaphore(4))


def test_a_placement_group_falls_in_one_shard_and_ids_spread_over_the_shards() -> None:
    """Seats of one show share a shard whatever their ids; aggregates of the default placement key spread
    over the shards (no shard takes more than three times its share of 10,000 ids)."""
    assert len({HOSTING.shard(seat(f"s{n}").address) for n in range(50)}) == 1
    alone = Hosting({"ns": [inventory]})
    per_shard = Counter(alone.shard(Address("ns", "inventory", "InventoryItem", f"i-{n}")) for n in range(10_000))
    assert len(per_shard) > 1000  # of 1,024
    assert max(per_shard.values()) < 3 * 10_000 / 1024


async def test_one_claim_per_shard_and_passivation_gives_nothing_up(
    placements: tuple[InMemoryPlacement, InMemoryPlacement],
) -> None:
    """Aggregates of one shard share the lease the first claimed, even when they activate at once; it stays
    held after every one of them has passivated, and the next activation writes nothing."""
    here, _ = placements
    leases = leases_of(here)
    a3, b7 = seat("a3"), seat("b7")
    claims = await asyncio.gather(leases.acquire(a3), leases.acquire(b7))
    a3.epoch, b7.epoch = (c.epoch for c in claims)
    assert a3.epoch == b7.epoch
    assert leases.sharing(a3.address) == 2
    for holder in (a3, b7):
        await leases.settle(holder, Ending.IDLE)
    key = HOSTING.lease_key(b7.address)
    owner = here.owner(key)
    assert owner is not None
    assert here.is_me(owner)
    assert owner.revision == a3.epoch
    revision = here.table.revision
    c1 = seat("c1")
    assert (await leases.acquire(c1)).epoch == a3.epoch
    assert here.table.revision == revision  # no write


@pytest.mark.parametrize(
    ("ending", "still_held"),
    [
        (Ending.IDLE, True),
        (Ending.STOPPED, True),
        (Ending.FAILED, True),
        (Ending.UNLEASED, True),
        (Ending.ELSEWHERE, True),
        (Ending.LOST, False),  # another node has it: let go, never released from under it
        (Ending.REVOKED, False),
    ],
)
async def test_what_an_ending_does_to_the_shard_lease(
    placements: tuple[InMemoryPlacement, InMemoryPlacement], ending: Ending, still_held: bool
) -> None:
    """However an actor ends, its shard's lease stays held for the shard's other aggregates, but for an
    actor that found the lease elsewhere (lost) or its node presumed dead (revoked): then the node lets it
    go without a write."""
    here, _ = placements
    leases = leases_of(here)
    holder = seat("a3")
    holder.epoch = (await leases.acquire(holder)).epoch
    revision = here.table.revision
    await leases.settle(holder, ending)
    assert leases.holds("ns", HOSTING.lease_key(holder.address)) == still_held
    assert here.table.revision == revision  # nothing written, nothing released


async def test_a_shard_moves_once_every_live_actor_of_it_has_reached_its_handover(
    placements: tuple[InMemoryPlacement, InMemoryPlacement],
) -> None:
    """A move waits for each live actor of the shard (one reaches its handover, another ends idle), and
    only then names the target; activations in the shard meanwhile wait, and then are the target's."""
    here, there = placements
    leases = leases_of(here)
    a3, b7 = seat("a3"), seat("b7")
    for holder in (a3, b7):
        holder.epoch = (await leases.acquire(holder)).epoch
    key = HOSTING.lease_key(a3.address)
    told: list[str] = []
    moving = asyncio.ensure_future(leases.move("ns", key, there.record, lambda: told.append("told")))
    await eventually(lambda: told == ["told"], timeout=5, what="the move telling the shard's actors")
    arriving = asyncio.ensure_future(leases.acquire(seat("c1")))
    handed = asyncio.ensure_future(leases.hand_over(a3, Move("there", there.incarnation, 0.0)))
    await eventually(lambda: reached(leases, key, a3), timeout=5, what="a3 at the handover")
    assert not moving.done()
    assert not handed.done()
    assert not arriving.done()
    owner = here.owner(key)
    assert owner is not None
    assert owner.node == "here"
    await leases.settle(b7, Ending.IDLE)
    assert await moving
    assert await handed
    owner = here.owner(key)
    assert owner is not None
    assert owner.node == "there"
    with pytest.raises(LeaseHeldError) as held:
        await arriving
    assert held.value.node == "there"
    assert not leases.holds("ns", key)


async def test_a_move_given_up_leaves_the_shard_and_a_stale_marker_moves_nothing(
    placements: tuple[InMemoryPlacement, InMemoryPlacement],
) -> None:
    """A move abandoned while an actor has not reached its handover keeps the shard here; the move marker
    that actor then reaches moves nothing, nor does a handover from an epoch no longer the lease's."""
    here, there = placements
    leases = leases_of(here)
    a3 = seat("a3")
    a3.epoch = (await leases.acquire(a3)).epoch
    key = HOSTING.lease_key(a3.address)
    moving = asyncio.ensure_future(leases.move("ns", key, there.record, lambda: None))
    await eventually(lambda: under_way(leases, key), timeout=5, what="the move under way")
    assert leases.abandon("ns", key)
    assert not await moving
    assert not await leases.hand_over(a3, Move("there", there.incarnation, 0.0))
    assert await leases.holder(a3) is None  # still ours
    stale = Holder(a3.address, epoch=a3.epoch - 1)
    assert not await leases.hand_over(stale, Move("there", there.incarnation, 0.0))


async def test_a_shard_with_no_live_actor_moves_at_once_and_others_stay(
    placements: tuple[InMemoryPlacement, InMemoryPlacement],
) -> None:
    """An idle shard's lease moves with one write; the node's other shards stay held."""
    here, there = placements
    leases = leases_of(here)
    a3, elsewhere = seat("a3"), other_shard(seat("a3"))
    for holder in (a3, elsewhere):
        holder.epoch = (await leases.acquire(holder)).epoch
        await leases.settle(holder, Ending.IDLE)
    key = HOSTING.lease_key(a3.address)
    assert await leases.move("ns", key, there.record, lambda: None)
    assert leases.held("ns") == [HOSTING.lease_key(elsewhere.address)]
    assert leases.shards() == {"ns/shows": 1}


async def test_stopping_releases_every_shard_and_lost_liveness_forgets_them(
    placements: tuple[InMemoryPlacement, InMemoryPlacement],
) -> None:
    """A stopping node releases each shard it holds, so others claim them at once; a node that lost its
    liveness drops its shards without a write (others may hold them now)."""
    here, _ = placements
    leases = leases_of(here)
    a3, elsewhere = seat("a3"), other_shard(seat("a3"))
    for holder in (a3, elsewhere):
        holder.epoch = (await leases.acquire(holder)).epoch
    await leases.release_all()
    assert here.table.leases == {}
    assert leases.held("ns") == []
    handed = other_shard(other_shard(a3))
    here.table.leases[HOSTING.lease_key(handed.address)] = Owner("here", here.incarnation, here.table.next_revision())
    assert leases.held("ns") == [HOSTING.lease_key(handed.address)]  # handed here, nothing active in it yet
    await leases.release_all()
    assert here.table.leases == {}
    a3.epoch = (await leases.acquire(a3)).epoch
    revision = here.table.revision
    leases.forget("ns")
    assert not leases.holds("ns", HOSTING.lease_key(a3.address))  # the next activation asks the server
    assert here.table.revision == revision
    assert here.owner(HOSTING.lease_key(a3.address)) is not None


async def test_no_lease_is_claimed_while_liveness_is_unconfirmed(
    placements: tuple[InMemoryPlacement, InMemoryPlacement],
) -> None:
    """A node whose liveness is gone claims nothing (a lease naming it would be taken over at once), and
    its actors may not act."""
    here, _ = placements
    leases = leases_of(here)
    await here.deregister()
    with pytest.raises(StoreUnavailableError, match="not confirmed live"):
        await leases.acquire(seat("a3"))
    assert not await leases.confirm_live(seat("a3"))


async def test_a_fenced_shard_is_not_released_and_stays_fenced_through_a_handover(
    placements: tuple[InMemoryPlacement, InMemoryPlacement],
) -> None:
    """A shard taken over from a node gone is fenced: moved, its new holder's actors are told to rewrite
    refusal records too (taken over); a stopping node leaves it in place for the next to take over."""
    here, there = placements
    leases, theirs = leases_of(here), leases_of(there)
    gone = seat("a3")
    gone.epoch = (await theirs.acquire(gone)).epoch
    await there.deregister()
    theirs.forget("ns")  # as a node that lost its liveness does
    holder = seat("a3")
    claim = await leases.acquire(holder)
    assert claim.taken_over
    key = HOSTING.lease_key(holder.address)
    await leases.settle(holder, Ending.IDLE)
    await there.register()
    assert await leases.move("ns", key, there.record, lambda: None)
    back = seat("b7")
    assert (await theirs.acquire(back)).taken_over  # the handover kept the fence
    await theirs.settle(back, Ending.IDLE)
    await theirs.release_all()
    owner = there.owner(key)
    assert owner is not None
    assert owner.fenced  # not released: the next node takes it over, fenced


async def test_a_failed_handover_drops_the_lease_and_ends_its_actors_reading_it_again(
    placements: tuple[InMemoryPlacement, InMemoryPlacement],
) -> None:
    """A move whose compare-and-set is refused (the lease changed meanwhile) leaves no lease held here: the
    actor at the handover hears it failed (False, not None), and the next activation claims afresh."""
    here, there = placements
    leases = leases_of(here)
    a3 = seat("a3")
    a3.epoch = (await leases.acquire(a3)).epoch
    key = HOSTING.lease_key(a3.address)
    here.table.leases[key] = here.table.leases[key]._replace(revision=here.table.next_revision())  # changed
    moving = asyncio.ensure_future(leases.move("ns", key, there.record, lambda: None))
    await eventually(lambda: under_way(leases, key), timeout=5, what="the move under way")
    assert await leases.hand_over(a3, Move("there", there.incarnation, 0.0)) is False
    assert not await moving
    assert not leases.holds("ns", key)
    assert await leases.hand_over(a3, Move("there", there.incarnation, 0.0)) is None  # no move under way
