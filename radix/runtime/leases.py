"""The shard leases a node holds, as its actors see them: the `Leases` port over each namespace's `Placement`.

A node holds a shard's lease for every aggregate of the shard (docs/placement.md, "Shards"): the
first activation in a shard claims it (one claim however many actors activate at once), every later
one in a shard held here writes nothing, and passivation gives nothing up. A lease leaves the node in
three ways: handed over whole (`move`, once every live actor of the shard has reached its handover:
a lease never moves while one of them may still act), released when the node stops, or dropped when
the node lost its liveness and others may have taken it over.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import assert_never

from radix.errors import LeaseHeldError, StoreError, StoreUnavailableError
from radix.observability.logs import logger
from radix.runtime.actor import Ending
from radix.runtime.hosting import Hosting
from radix.runtime.mailbox import Move
from radix.runtime.ports import LeaseHolder
from radix.store.ports import Claim, Placement
from radix.wire.control import NodeRecord
from radix.wire.names import Address, shard_of_lease_key

__all__ = ["NodeLeases"]


@dataclass(slots=True)
class _Handover:
    """A shard's lease on its way to another node: it moves once `waiting` is empty."""

    to: NodeRecord
    waiting: set[LeaseHolder]  # live actors of the shard that have not reached their handover yet
    done: asyncio.Future[bool]  # True once the lease is the target's; False if the move was given up
    transferring: bool = False  # the compare-and-set is under way: the move can no longer be given up


@dataclass(slots=True)
class _Lease:
    """A shard lease this node holds: its epoch, the live actors under it, and a handover under way."""

    epoch: int
    taken_over: bool = False  # from a node presumed dead, which may still be writing
    actors: set[LeaseHolder] = field(default_factory=set)
    moving: _Handover | None = None
    adopted: bool = False  # taken from the shard table for a move or a release: no actor may act under it


class NodeLeases:
    """The node's side of every shard lease it holds, by namespace."""

    def __init__(
        self,
        placements: Mapping[str, Placement],
        hosting: Hosting,
        *,
        renew: Callable[[str], Awaitable[bool]],
        pace: asyncio.Semaphore,
    ) -> None:
        self._placements = placements
        self._hosting = hosting
        self._renew = renew
        self._pace = pace
        self._held: dict[str, dict[str, _Lease]] = {}  # namespace -> lease key -> lease held
        self._claiming: dict[tuple[str, str], asyncio.Future[_Lease]] = {}  # claims in flight
        self._generation: dict[str, int] = {}  # per namespace, raised when its leases are all dropped

    def _leases(self, namespace: str) -> dict[str, _Lease]:
        held = self._held.get(namespace)
        if held is None:
            held = self._held[namespace] = {}
        return held

    def sharing(self, address: Address) -> int:
        """How many live aggregates of this node are under the aggregate's shard lease (0: none, or not held)."""
        lease = self._leases(address.namespace).get(self._hosting.lease_key(address))
        return len(lease.actors) if lease is not None else 0

    def held(self, namespace: str) -> list[str]:
        """The keys of the shard leases this node holds in a namespace: those its actors hold, and those the
        shard table names it for (a shard handed to it in which nothing has activated yet)."""
        keys = dict.fromkeys(self._leases(namespace))
        keys.update(dict.fromkeys(k for k in self._placements[namespace].mine() if shard_of_lease_key(k)))
        return list(keys)

    def holds(self, namespace: str, key: str) -> bool:
        """Whether an actor of this node holds the shard's lease (an activation in it then writes nothing)."""
        return key in self._leases(namespace)

    def shards(self) -> Counter[str]:
        """Shard leases held per `namespace/context`."""
        counts: Counter[str] = Counter()
        for namespace in self._placements:
            for key in self.held(namespace):
                shard = shard_of_lease_key(key)
                if shard is not None:
                    counts[f"{namespace}/{shard[0]}"] += 1
        return counts

    def _adopted(self, namespace: str, key: str) -> _Lease | None:
        """The lease of a shard this node holds, taken from the shard table if no actor of it holds it yet.
        Only for writes fenced on its revision (a move, a release): a table that lags makes them fail."""
        held = self._leases(namespace)
        lease = held.get(key)
        if lease is None:
            placement = self._placements[namespace]
            owner = placement.owner(key)
            if owner is not None and placement.is_me(owner):
                lease = held[key] = _Lease(owner.revision, owner.fenced, adopted=True)
        return lease

    # -- the Leases port -------------------------------------------------------------------

    async def acquire(self, holder: LeaseHolder) -> Claim:
        namespace, key = holder.address.namespace, self._hosting.lease_key(holder.address)
        while True:  # looked at again after every wait: a move may have begun meanwhile
            lease = self._leases(namespace).get(key)
            if lease is not None and lease.moving is not None:
                # The shard is being handed over: once it has moved, the aggregate is the target's.
                handover = lease.moving
                if await asyncio.shield(handover.done):
                    raise LeaseHeldError(key, node=handover.to.node, incarnation=handover.to.incarnation, revision=0)
            elif lease is None or lease.adopted:  # an actor acts only under a lease read from the server
                await self._claim(namespace, key)
            else:
                lease.actors.add(holder)  # no wait since the look: a move would count this actor in
                return Claim(lease.epoch, lease.taken_over)

    async def take(self, namespace: str, key: str) -> bool:
        """Take a shard over from a node that is gone, before any command asks for it; False if another
        node took it first (or the store did not answer: its next command takes it over then)."""
        if self.holds(namespace, key):
            return True
        try:
            await self._claim(namespace, key)
        except (LeaseHeldError, StoreUnavailableError) as e:
            logger.info("shard not taken over", lease=key, error=repr(e))
            return False
        return True

    async def _claim(self, namespace: str, key: str) -> _Lease:
        """The shard's lease, claimed (or taken over) once however many of its aggregates activate at once."""
        pending = self._claiming.get((namespace, key))
        if pending is None:
            pending = self._claiming[(namespace, key)] = asyncio.ensure_future(self._claim_now(namespace, key))
            pending.add_done_callback(lambda done: self._claimed(namespace, key, done))
        return await asyncio.shield(pending)

    def _claimed(self, namespace: str, key: str, done: asyncio.Future[_Lease]) -> None:
        self._claiming.pop((namespace, key), None)
        if not done.cancelled():
            done.exception()  # retrieved here: every waiter may have been cancelled meanwhile

    async def _claim_now(self, namespace: str, key: str) -> _Lease:
        if not await self._confirmed_live(namespace):
            # Presumed dead, or about to be: a lease taken now would name an incarnation
            # others may already count as gone.
            raise StoreUnavailableError(f"{self._placements[namespace].node_id} is not confirmed live; retry")
        generation = self._generation.get(namespace, 0)
        claim = await self._placements[namespace].acquire(key)
        if self._generation.get(namespace, 0) != generation:
            # The node stepped down (or is stopping) meanwhile: a lease kept now would outlive that.
            raise StoreUnavailableError(f"{self._placements[namespace].node_id} stepped down while claiming; retry")
        held = self._leases(namespace)
        lease = held.get(key)
        if lease is None or (lease.adopted and lease.moving is None):
            lease = held[key] = _Lease(claim.epoch, claim.taken_over)
        return lease

    async def holder(self, holder: LeaseHolder) -> str | None:
        placement = self._placements[holder.address.namespace]
        # From the leader: a lagging replica may still show our lease after it was taken over,
        # and an actor that believed it would reload and write under its old epoch.
        owner = await placement.read(self._hosting.lease_key(holder.address), leader=True)
        if owner is not None and placement.is_me(owner) and owner.revision == holder.epoch:
            return None
        return owner.node if owner is not None else ""

    async def confirm_live(self, holder: LeaseHolder) -> bool:
        # Before answering from local state, which may be stale if others took over.
        return await self._confirmed_live(holder.address.namespace) and not holder.revoked

    async def _confirmed_live(self, namespace: str) -> bool:
        """Whether this node's liveness is fresh, renewing it first if the last renewal is old
        (a pause, a slow loop, an outage)."""
        placement = self._placements[namespace]
        if not placement.liveness_fresh():
            await self._renew(namespace)
        return placement.liveness_fresh()

    async def hand_over(self, holder: LeaseHolder, move: Move) -> bool | None:
        """The actor has reached its handover: once all of its shard's live actors have, the lease moves
        (`move`): True once it is the target's, False if the move failed. None for a marker of no move under
        way for the actor's lease (one given up): nothing moves."""
        namespace, key = holder.address.namespace, self._hosting.lease_key(holder.address)
        lease = self._leases(namespace).get(key)
        handover = lease.moving if lease is not None else None
        if lease is None or handover is None or lease.epoch != holder.epoch or handover.to.node != move.node:
            return None
        await self._reached(namespace, key, lease, holder)
        return await asyncio.shield(handover.done)

    # -- moving a shard --------------------------------------------------------------------

    async def move(self, namespace: str, key: str, to: NodeRecord, tell: Callable[[], None]) -> bool:
        """Hand a shard's lease to `to`: `tell` asks the shard's live actors to move (each snapshots and
        reaches its handover), and the lease moves by compare-and-set once the last of those under the
        lease has. `tell` is called once they are counted, and must reach every live actor of the shard.
        True once it is the target's; False if it is not held here or changed meanwhile. Activations in
        the shard wait for the outcome meanwhile (and then go to the target)."""
        claiming = self._claiming.get((namespace, key))
        if claiming is not None:  # a claim in flight would land after the lease moved: let it land first
            await asyncio.wait([claiming])
        adopted = not self.holds(namespace, key)
        lease = self._adopted(namespace, key)
        if lease is None:
            return False
        if lease.moving is not None:
            return await asyncio.shield(lease.moving.done)
        handover = lease.moving = _Handover(to, set(lease.actors), _future())
        tell()
        if not handover.waiting:
            await self._complete(namespace, key, lease)
        moved = await asyncio.shield(handover.done)
        held = self._leases(namespace)
        if not moved and adopted and not lease.actors and held.get(key) is lease:
            del held[key]  # taken from a table that may lag: the next activation claims it from the server
        return moved

    def abandon(self, namespace: str, key: str) -> bool:
        """Give up a move that took too long, unless its lease is already on its way: the shard stays here,
        and its actors serve on. False if the lease is being transferred (its outcome is near)."""
        lease = self._leases(namespace).get(key)
        if lease is None or lease.moving is None:
            return True
        if lease.moving.transferring:
            return False
        handover, lease.moving = lease.moving, None
        handover.done.set_result(False)
        return True

    async def _reached(self, namespace: str, key: str, lease: _Lease, holder: LeaseHolder) -> None:
        """One actor of a moving shard has reached its handover (or ended): move the lease after the last."""
        handover = lease.moving
        if handover is None or holder not in handover.waiting:
            return
        handover.waiting.discard(holder)
        if not handover.waiting:
            await self._complete(namespace, key, lease)

    async def _complete(self, namespace: str, key: str, lease: _Lease) -> None:
        handover = lease.moving
        assert handover is not None
        handover.transferring, moved = True, False
        try:
            await self._placements[namespace].transfer(key, lease.epoch, handover.to, fenced=lease.taken_over)
            moved = True
        except Exception as e:  # whatever failed, the barrier opens
            logger.warning("shard not handed over", lease=key, to=handover.to.node, error=repr(e))
        finally:
            # Moved, refused (the lease changed), or unknown (a time-out: it may have landed): in each case
            # the lease is no longer taken as this node's. Its actors read it from the leader before they
            # act again (`AggregateActor._move`), and the next activation claims it from the server.
            held = self._leases(namespace)
            if held.get(key) is lease:
                del held[key]
            lease.moving = None
            if not handover.done.done():
                handover.done.set_result(moved)

    # -- after an actor ended, and when the node stops -------------------------------------

    async def settle(self, holder: LeaseHolder, ending: Ending) -> None:
        """What becomes of the shard lease after one of its actors ended: kept for the shard's other
        aggregates whatever the ending, but dropped if another node has it now."""
        namespace, key = holder.address.namespace, self._hosting.lease_key(holder.address)
        held = self._leases(namespace)
        lease = held.get(key)
        if lease is None:
            return
        lease.actors.discard(holder)
        await self._reached(namespace, key, lease, holder)
        match ending:
            case Ending.IDLE | Ending.STOPPED | Ending.FAILED | Ending.MOVED | Ending.UNLEASED | Ending.ELSEWHERE:
                pass  # the shard is still held here (or was handed over whole, or never was)
            case Ending.LOST | Ending.REVOKED:
                if lease.epoch == holder.epoch and held.get(key) is lease:
                    del held[key]  # another node has it: let go, never released from under it
            case _:
                assert_never(ending)

    async def release_all(self) -> None:
        """Give up every shard lease this node holds (its actors have all ended): the node is stopping,
        and others claim the shards at their next command instead of waiting out its liveness. A fenced
        lease is left as it is: the next node takes it over, and fences its refusals, as it must."""

        async def release(namespace: str, key: str, lease: _Lease) -> None:
            async with self._pace:
                try:
                    await self._placements[namespace].release(key, lease.epoch)
                except StoreError as e:
                    logger.warning("lease not released; it passes on when this node's liveness expires", error=repr(e))

        async with asyncio.TaskGroup() as group:
            for namespace in self._placements:
                for key in self.held(namespace):
                    lease = self._adopted(namespace, key)
                    if lease is not None and not lease.taken_over:
                        group.create_task(release(namespace, key, lease))
                self._generation[namespace] = self._generation.get(namespace, 0) + 1
                self._leases(namespace).clear()

    def forget(self, namespace: str) -> None:
        """Drop every lease of a namespace without releasing it: this node lost its liveness, others may
        have them."""
        for lease in self._leases(namespace).values():
            if lease.moving is not None and not lease.moving.done.done():
                lease.moving.done.set_result(False)
        self._generation[namespace] = self._generation.get(namespace, 0) + 1
        self._leases(namespace).clear()


def _future() -> asyncio.Future[bool]:
    return asyncio.get_running_loop().create_future()
