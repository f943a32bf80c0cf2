"""Planned moves of live aggregates between nodes: draining a node, rebalancing, and moves an operator asks
for (docs/placement.md, "Migration"). Failover needs no move: the next command for an aggregate whose
owner is gone takes its lease over where it arrives.

A move puts a `Move` in the actor's mailbox: the actor finishes what is queued before it,
snapshots, and hands the lease over by compare-and-set; what queues meanwhile follows it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping

from radix import wire
from radix.observability.logs import logger
from radix.runtime.actor import AggregateActor, Ending
from radix.runtime.actors import Actors
from radix.runtime.config import PlacementConfig
from radix.runtime.hosting import Hosting
from radix.runtime.leases import NodeLeases
from radix.runtime.mailbox import STOP, Move
from radix.store.placement import KVPlacement
from radix.wire.control import NodeRecord
from radix.wire.names import Address

__all__ = ["Migrations"]


class Migrations:
    """Moves one node's live aggregates to other nodes."""

    def __init__(
        self,
        *,
        node_id: str,
        hosting: Hosting,
        placements: Mapping[str, KVPlacement],
        actors: Actors,
        leases: NodeLeases,
        config: PlacementConfig,
        wait: float,
        running: Callable[[], bool],
    ) -> None:
        self._node_id = node_id
        self._hosting = hosting
        self._placements = placements
        self._actors = actors
        self._leases = leases
        self._config = config
        self._wait = wait  # how long a move may take (the node's shutdown_timeout)
        self._running = running

    def target(self, address: Address) -> NodeRecord | None:
        """The least loaded other live node hosting the aggregate's context."""
        placement = self._placements[address.namespace]
        counts = placement.counts(address.context)
        candidates = [r for r in placement.live_nodes(address.context) if r.node != self._node_id]
        if not candidates:
            return None
        return min(candidates, key=lambda r: (counts.get(r.node, 0), r.node))

    async def migrate(self, address: Address, *, to: str | None = None) -> wire.ControlAnswer:
        """Move a live aggregate of this node to another node (`to`, or the least loaded)."""
        actor = self._actors.peek(address)
        if actor is None:
            return wire.ControlAnswer(ok=False, reason=f"{address} is not live on {self._node_id}")
        if to == self._node_id:
            return wire.ControlAnswer(ok=False, reason=f"{address} is on {to} already")
        if to is None:
            target = self.target(address)
        else:
            live = self._placements[address.namespace].live_nodes(address.context)
            target = next((r for r in live if r.node == to), None)
        if target is None or target.node == self._node_id:
            return wire.ControlAnswer(ok=False, reason=f"no live node {to or '(other)'} hosts {address.context}")
        if self._leases.sharing(address) > 1:
            return wire.ControlAnswer(ok=False, reason=f"{address} shares its placement key with other live aggregates")
        actor.post(Move(target.node, target.incarnation, time.monotonic()))
        await self._ended(actor)
        return wire.ControlAnswer(ok=actor.ending is Ending.MOVED, to=actor.hand_to, ended=actor.ending.value)

    async def _ended(self, actor: AggregateActor) -> None:
        task = self._actors.task(actor)
        if task is not None:
            await asyncio.wait([task], timeout=self._wait)

    async def hand_off_all(self) -> None:
        """Hand every live aggregate to the least loaded other node hosting its context (`handoff_concurrency`
        at a time: every aggregate is served until its own turn, so its pause is one handoff); stop those
        no other node can take."""
        gate = asyncio.Semaphore(self._config.handoff_concurrency)

        async def hand_off(actor: AggregateActor) -> None:
            async with gate:
                target = self.target(actor.address)
                actor.post(STOP if target is None else Move(target.node, target.incarnation, time.monotonic()))
                await self._ended(actor)

        async with asyncio.TaskGroup() as group:
            for actor in self._actors.all():
                group.create_task(hand_off(actor))

    async def rebalance(self) -> None:
        """Push live aggregates to less loaded nodes when this node holds more than its share (runs for good)."""
        config = self._config
        while True:
            await asyncio.sleep(config.rebalance_interval)
            if not self._running() or config.rebalance_batch == 0:
                continue
            for hosted in self._hosting:
                self._rebalance(hosted.namespace, hosted.context.name)

    def _rebalance(self, namespace: str, context: str) -> None:
        config = self._config
        counts = self._placements[namespace].counts(context)
        if len(counts) < 2:
            return
        mine = counts.get(self._node_id, 0)
        share = sum(counts.values()) / len(counts)
        excess = int(mine - max(share * (1 + config.rebalance_threshold), share + 1))
        if excess <= 0:
            return
        movable = [
            a
            for a in self._actors.all()
            if a.address.namespace == namespace
            and a.address.context == context
            and not a.busy
            and a.mailbox.empty()
            and not a.moving
        ][: min(excess, config.rebalance_batch)]
        logger.info("rebalancing", context=context, moving=len(movable), mine=mine, share=round(share, 1))
        for actor in movable:
            target = self.target(actor.address)
            if target is None:
                break
            counts[target.node] = counts.get(target.node, 0) + 1
            actor.moving = True
            actor.post(Move(target.node, target.incarnation, time.monotonic()))
