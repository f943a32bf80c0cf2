"""Planned moves of shards between nodes: draining a node, rebalancing, and moves an operator asks for
(docs/placement.md, "Migration"); and failover: once a node is found gone, the live nodes split its
shards and take them over, one compare-and-set each (and a command for one still unclaimed takes it
over where it arrives).

A move puts a `Move` in the mailbox of each live actor of the shard: each finishes what is queued
before it and snapshots; once the last has, the shard's lease moves by compare-and-set, and what
queued meanwhile follows it. Only the moving shard pauses.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping

from radix import wire
from radix.observability.logs import logger
from radix.runtime.actor import AggregateActor, Ending
from radix.runtime.actors import Actors
from radix.runtime.allocation import assign, least_loaded, rebalance_plan
from radix.runtime.config import PlacementConfig
from radix.runtime.hosting import Hosting
from radix.runtime.leases import NodeLeases
from radix.runtime.mailbox import STOP, Move, Prepare
from radix.store.placement import KVPlacement
from radix.wire.control import NodeRecord
from radix.wire.names import Address, shard_of_lease_key

__all__ = ["Migrations"]


async def take_over(
    placement: KVPlacement, leases: NodeLeases, namespace: str, context: str, gate: asyncio.Semaphore
) -> int:
    """This node's part of taking over the context's shards that name a node no longer live: the live
    nodes split them by `allocation.assign` (each computes the same split from the same view), one
    compare-and-set each, before any command asks; a shard another node takes first is left to it.
    Their aggregates then activate on demand. Returns how many this node took."""
    orphans = placement.orphans(context)
    if not orphans:
        return 0
    mine = [key for key, node in assign(orphans, placement.counts(context)).items() if node == placement.node_id]

    async def take(key: str) -> bool:
        async with gate:
            return await leases.take(namespace, key)

    return sum(await asyncio.gather(*(take(key) for key in mine)))


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
        self._gate = asyncio.Semaphore(config.handoff_concurrency)

    def target(self, address: Address) -> NodeRecord | None:
        """The least loaded other live node hosting the aggregate's context."""
        return self._least_loaded(address.namespace, address.context)

    def _least_loaded(self, namespace: str, context: str) -> NodeRecord | None:
        """The other live node hosting `context` that holds the fewest of its shards."""
        return self._record(
            namespace, context, least_loaded(self._placements[namespace].counts(context), besides=self._node_id)
        )

    def _record(self, namespace: str, context: str, node: str | None) -> NodeRecord | None:
        return next((r for r in self._placements[namespace].live_nodes(context) if r.node == node), None)

    async def migrate(self, address: Address, *, to: str | None = None) -> wire.ControlAnswer:
        """Move an aggregate's shard, with every live aggregate in it, from this node to another (`to`, or
        the least loaded): a placement group is never split."""
        key = self._hosting.lease_key(address)
        if not self._leases.holds(address.namespace, key):
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
        if not await self.move_shard(address.namespace, key, target):
            return wire.ControlAnswer(ok=False, reason=f"the shard of {address} did not move; retry")
        return wire.ControlAnswer(ok=True, to=target.node, ended=Ending.MOVED.value)

    async def move_shard(self, namespace: str, key: str, target: NodeRecord) -> bool:
        """Hand a shard held here, and its live actors, to `target`: each actor finishes what is queued
        before its move, snapshots and reaches its handover; the lease moves after the last. Given up
        (the shard stays here) if that takes longer than a move may. True once the target holds it."""
        actors = self._of_shard(namespace, key)
        if actors:  # snapshots first, while the shard still serves: the pause is then the tail's alone
            prepared = asyncio.Event()
            left = len(actors)

            def one_prepared() -> None:
                nonlocal left
                left -= 1
                if not left:
                    prepared.set()

            for actor in actors:
                actor.post(Prepare(one_prepared))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(prepared.wait(), self._wait)

        told: list[AggregateActor] = []

        def tell() -> None:  # every live actor of the shard now, those activated since the snapshots too
            move = Move(target.node, target.incarnation, time.monotonic())
            told.extend(self._of_shard(namespace, key))
            for actor in told:
                actor.moving = True
                actor.post(move)

        moving = asyncio.ensure_future(self._leases.move(namespace, key, target, tell))
        done, _ = await asyncio.wait([moving], timeout=self._wait)
        if not done and self._leases.abandon(namespace, key):
            moving.cancel()  # given up before its lease was on its way: nothing more of it may happen
            logger.warning("shard move given up: its actors took too long", lease=key, to=target.node)
        try:
            moved = await moving
        except asyncio.CancelledError:
            if not moving.cancelled():
                raise  # this task itself was cancelled
            moved = False
        for actor in told:
            actor.moving = False
        return moved

    def _key(self, actor: AggregateActor) -> str:
        return self._hosting.lease_key(actor.address)

    def _of_shard(self, namespace: str, key: str) -> list[AggregateActor]:
        """The live actors of one shard of this node."""
        return [a for a in self._actors.all() if a.address.namespace == namespace and self._key(a) == key]

    async def take_over(self, namespace: str) -> None:
        """Take this node's part of the shards of nodes found gone, in every context of the namespace."""
        if not self._running():
            return
        for context in self._hosting.contexts(namespace):
            taken = await take_over(self._placements[namespace], self._leases, namespace, context, self._gate)
            if taken:
                logger.info("shards taken over", context=context, shards=taken)

    async def hand_off_all(self) -> None:
        """Hand every shard held here to the least loaded other node hosting its context
        (`handoff_concurrency` at a time: every shard is served until its own turn, so its pause is one
        handoff); stop the actors of those no other node can take."""
        gate = asyncio.Semaphore(self._config.handoff_concurrency)

        async def hand_off(namespace: str, key: str) -> None:
            async with gate:
                shard = shard_of_lease_key(key)
                target = self._least_loaded(namespace, shard[0]) if shard is not None else None
                if target is None or not await self.move_shard(namespace, key, target):
                    for actor in self._of_shard(namespace, key):
                        actor.post(STOP)

        async with asyncio.TaskGroup() as group:
            for namespace in self._hosting.namespaces:
                for key in self._leases.held(namespace):
                    group.create_task(hand_off(namespace, key))

    async def rebalance(self) -> None:
        """Push shards to less loaded nodes when this node holds more than its share (runs for good)."""
        config = self._config
        while True:
            await asyncio.sleep(config.rebalance_interval)
            if not self._running() or config.rebalance_batch == 0:
                continue
            for hosted in self._hosting:
                await self._rebalance(hosted.namespace, hosted.context.name)

    async def _rebalance(self, namespace: str, context: str) -> None:
        """Move this node's part of the context's rebalancing plan (`allocation.rebalance_plan`): shards with
        no live actor first (they move with one write), then those whose actors are all idle."""
        config = self._config
        counts = self._placements[namespace].counts(context)
        plan = rebalance_plan(counts, threshold=config.rebalance_threshold, batch=config.rebalance_batch)
        takers = [taker for giver, taker in plan if giver == self._node_id]
        if not takers:
            return
        live: dict[str, list[AggregateActor]] = {}
        for actor in self._actors.all():
            if actor.address.namespace == namespace and actor.address.context == context:
                live.setdefault(self._key(actor), []).append(actor)
        idle = [
            key
            for key in self._leases.held(namespace)
            if (shard := shard_of_lease_key(key)) is not None
            and shard[0] == context
            and all(not a.busy and a.mailbox.empty() and not a.moving for a in live.get(key, []))
        ]
        idle.sort(key=lambda key: len(live.get(key, [])))
        logger.info(
            "rebalancing", context=context, moving=min(len(takers), len(idle)), shards=counts.get(self._node_id)
        )
        gate = asyncio.Semaphore(config.handoff_concurrency)

        async def move(key: str, target: NodeRecord) -> None:
            async with gate:
                await self.move_shard(namespace, key, target)

        async with asyncio.TaskGroup() as group:
            for key, taker in zip(idle, takers, strict=False):
                target = self._record(namespace, context, taker)
                if target is not None:
                    group.create_task(move(key, target))
