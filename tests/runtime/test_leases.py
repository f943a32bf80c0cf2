"""The node's side of its leases (`NodeLeases`), on the in-memory placement: shared leases, handovers, and
what each way an actor can end does to its lease."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from radix import Aggregate, BoundedContext, Command, Event, StoreUnavailableError
from radix.runtime.actor import Ending
from radix.runtime.hosting import Hosting
from radix.runtime.leases import NodeLeases
from radix.runtime.mailbox import Move
from radix.store import InMemoryLeaseTable, InMemoryPlacement
from radix.wire.names import Address


class SeatCommand(Command): ...


class Book(SeatCommand): ...


class SeatEvent(Event): ...


class Booked(SeatEvent): ...


class Seat(Aggregate[int, SeatCommand, SeatEvent]):
    """Seats of one show share a placement key: `show-1/a3` and `show-1/b7` live and move together."""

    def initial_state(self) -> int:
        return 0

    def evolve(self, state: int, event: SeatEvent) -> int:
        return state + 1

    def decide(self, state: int, command: SeatCommand) -> Sequence[SeatEvent]:
        return [Booked()]

    def placement_key(self, aggregate_id: str) -> str:
        return f"Seat.{aggregate_id.split('=')[0]}"


HOSTING = Hosting({"ns": [BoundedContext("shows", [Seat()])]})


@dataclass
class Holder:
    """An actor, as its lease sees it."""

    address: Address
    epoch: int = 0
    revoked: bool = False


def seat(seat_id: str) -> Holder:
    return Holder(Address("ns", "shows", "Seat", f"show-1={seat_id}"))


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


async def test_aggregates_of_one_placement_key_share_a_lease_until_the_last_ends(
    placements: tuple[InMemoryPlacement, InMemoryPlacement],
) -> None:
    """The second aggregate of a key joins the lease the first claimed; it is released when both have ended."""
    here, _ = placements
    leases = leases_of(here)
    a3, b7 = seat("a3"), seat("b7")
    a3.epoch = (await leases.acquire(a3)).epoch
    b7.epoch = (await leases.acquire(b7)).epoch
    assert a3.epoch == b7.epoch
    assert leases.sharing(a3.address) == 2
    await leases.settle(a3, Ending.IDLE)
    assert await leases.holder(b7) is None  # still held, by b7
    await leases.settle(b7, Ending.IDLE)
    assert here.owner(HOSTING.lease_key(b7.address)) is None
    assert await leases.holder(b7) == ""


@pytest.mark.parametrize(
    ("ending", "released", "still_held_here"),
    [
        (Ending.IDLE, True, False),
        (Ending.STOPPED, True, False),
        (Ending.FAILED, True, False),
        (Ending.LOST, False, False),  # another node has it: let go, never released from under it
        (Ending.ELSEWHERE, False, False),
        (Ending.REVOKED, False, False),
        (Ending.UNLEASED, False, True),  # held by another of its aggregates: nothing to give up
    ],
)
async def test_what_an_ending_does_to_the_lease(
    placements: tuple[InMemoryPlacement, InMemoryPlacement], ending: Ending, released: bool, still_held_here: bool
) -> None:
    """Ended idle, stopped or failed, an actor's lease is released; lost, held elsewhere or revoked, it is
    let go of without a write; an actor that never held it changes nothing."""
    here, _ = placements
    leases = leases_of(here)
    holder, other = seat("a3"), seat("b7")
    holder.epoch = (await leases.acquire(holder)).epoch
    if ending is Ending.UNLEASED:
        other.epoch = (await leases.acquire(other)).epoch
        await leases.settle(holder, Ending.IDLE)  # the holder's share ends; the other's stays
    await leases.settle(holder, ending)
    key = HOSTING.lease_key(holder.address)
    assert (here.owner(key) is None) == released
    assert (leases.sharing(holder.address) > 0) == still_held_here


async def test_a_lease_moves_with_a_handover_and_only_at_its_epoch(
    placements: tuple[InMemoryPlacement, InMemoryPlacement],
) -> None:
    """A handover names the target; the former holder then hears that the target holds it. A handover
    from an epoch that is no longer the lease's fails (and changes nothing)."""
    here, there = placements
    leases = leases_of(here)
    holder = seat("a3")
    holder.epoch = (await leases.acquire(holder)).epoch
    stale = Holder(holder.address, epoch=holder.epoch - 1)
    assert not await leases.hand_over(stale, Move("there", there.incarnation, 0.0))
    assert await leases.holder(holder) is None
    assert await leases.hand_over(holder, Move("there", there.incarnation, 0.0))
    assert await leases.holder(holder) == "there"
    assert leases.sharing(holder.address) == 0


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
