"""The leases a node holds, as its actors see them: the `Leases` port over each namespace's `Placement`.

A lease may be shared by several live aggregates (those of one placement key): it is claimed
by the first to activate, and released when the last of them ends. A release in flight is
waited for before the lease is claimed again, so that it cannot delete the new claim.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import assert_never

from radix.errors import KeyChangedError, StoreUnavailableError
from radix.observability.logs import logger
from radix.runtime.actor import Ending
from radix.runtime.hosting import Hosting
from radix.runtime.mailbox import Move
from radix.runtime.ports import LeaseHolder
from radix.store.ports import Claim, Placement
from radix.wire.control import NodeRecord
from radix.wire.names import Address

__all__ = ["NodeLeases"]


@dataclass(slots=True)
class _Lease:
    """A lease this node holds: its epoch, the live actors under it, and a release in flight."""

    epoch: int
    taken_over: bool = False  # from a node presumed dead, which may still be writing
    actors: tuple[LeaseHolder, ...] = ()  # nearly always one: a tuple is the lightest
    releasing: asyncio.Future[None] | None = None


class NodeLeases:
    """The node's side of every lease it holds, by namespace."""

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

    def _leases(self, namespace: str) -> dict[str, _Lease]:
        held = self._held.get(namespace)
        if held is None:
            held = self._held[namespace] = {}
        return held

    def sharing(self, address: Address) -> int:
        """How many live aggregates of this node share the aggregate's lease (0: it holds none)."""
        lease = self._leases(address.namespace).get(self._hosting.lease_key(address))
        return len(lease.actors) if lease is not None else 0

    # -- the Leases port -------------------------------------------------------------------

    async def acquire(self, holder: LeaseHolder) -> Claim:
        namespace, key = holder.address.namespace, self._hosting.lease_key(holder.address)
        lease = self._leases(namespace).get(key)
        if lease is not None and lease.releasing is not None:
            # A passivated actor of this lease is giving it up: let that finish, then claim afresh,
            # so the release cannot delete the lease from under the new actor.
            await asyncio.shield(lease.releasing)
            lease = self._leases(namespace).get(key)
        if lease is None:
            if not await self._confirmed_live(namespace):
                # Presumed dead, or about to be: a lease taken now would name an incarnation
                # others may already count as gone.
                raise StoreUnavailableError(f"{self._placements[namespace].node_id} is not confirmed live; retry")
            claim = await self._placements[namespace].acquire(key)
            lease = self._leases(namespace).setdefault(key, _Lease(claim.epoch, claim.taken_over))
        if holder not in lease.actors:
            lease.actors += (holder,)
        return Claim(lease.epoch, lease.taken_over)

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

    async def hand_over(self, holder: LeaseHolder, move: Move) -> bool:
        address = holder.address
        key = self._hosting.lease_key(address)
        record = NodeRecord(move.node, move.incarnation, [address.context], "")
        try:
            await self._placements[address.namespace].transfer(key, holder.epoch, record)
        except KeyChangedError:
            return False
        self._leases(address.namespace).pop(key, None)
        return True

    # -- after an actor ended --------------------------------------------------------------

    async def settle(self, holder: LeaseHolder, ending: Ending) -> None:
        """What becomes of the lease of an actor that ended: released once its last actor ended (unless
        handed over), forgotten if another node has it now."""
        namespace, key = holder.address.namespace, self._hosting.lease_key(holder.address)
        held = self._leases(namespace)
        lease = held.get(key)
        if lease is not None and holder in lease.actors:
            lease.actors = tuple(a for a in lease.actors if a is not holder)
        match ending:
            case Ending.IDLE | Ending.STOPPED | Ending.FAILED:
                if lease is not None and not lease.actors:
                    await self._release(namespace, key, lease)
            case Ending.LOST | Ending.ELSEWHERE | Ending.REVOKED:
                held.pop(key, None)
            case Ending.MOVED | Ending.UNLEASED:
                pass  # handed over already, or never held
            case _:
                assert_never(ending)

    async def _release(self, namespace: str, key: str, lease: _Lease) -> None:
        lease.releasing = asyncio.get_running_loop().create_future()
        try:
            async with self._pace:
                await self._placements[namespace].release(key, lease.epoch)
        except StoreUnavailableError as e:
            logger.warning("lease not released; it passes on when this node's liveness expires", error=repr(e))
        finally:
            held = self._leases(namespace)
            if held.get(key) is lease:
                del held[key]
            lease.releasing.set_result(None)

    def forget(self, address: Address) -> None:
        """Drop the aggregate's lease without releasing it: this node lost its liveness, others may have it."""
        self._leases(address.namespace).pop(self._hosting.lease_key(address), None)
