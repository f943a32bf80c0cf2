"""Running a node's reactions and projections: which partitions it owns, and each partition's reader.

Every reaction and projection of a hosted context is read from the context's feed in partitions
(`radix.store.feed`). Each partition belongs to one node at a time, through a lease in the leases
bucket (`_processors.{ctx}.{name}.{p}`): the live node ranked first for it by rendezvous hashing
over the nodes hosting the context claims it, and a node that holds one it is no longer first for
(a node joined) lets it go, so the work spreads and moves as nodes come and go. A lease of a node
presumed dead is taken over like an aggregate's. Once a second (`ProcessingConfig.interval`) the
supervisor looks again.

A partition's owner (`Partition`) reads its events in order, hands each selected one to the
handler, and acknowledges a batch once it is handled:

- a reaction's commands are sent with ids derived from the event (`command_id_for`), with the
  event as their causation and the causing command's correlation id, so a batch read again (after
  a takeover, a crash before the acknowledgement) applies no command twice: the aggregate answers a
  known id with its first outcome;
- a projection applies the batch to its view, which moves its checkpoint in the same write; the
  owner starts after the view's checkpoint, so nothing is skipped or applied twice;
- an event whose handling fails is tried again with a doubling pause, `attempts` times in all, then
  parked (`radix.store.parked`) with the error; later events of its aggregate are parked behind it,
  and the rest of the partition goes on. Parked events marked for a retry are tried again in order.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from nats.aio.client import Client as NATS

from radix.domain import BoundedContext, Projection, Reaction, View
from radix.errors import LeaseHeldError
from radix.observability.logs import logger
from radix.runtime.config import ProcessingConfig
from radix.runtime.hosting import Hosting
from radix.runtime.partition import Partition, PartitionReader, Unit
from radix.store.feed import Feed
from radix.store.parked import ParkedStore
from radix.store.placement import KVPlacement
from radix.store.views import open_view

__all__ = ["Processors"]

#: Seconds a partition reader is given to stop once cancelled (a thread's database call to finish).
_LET_GO_WAIT = 10.0


def _rank(unit_key: str, node: str) -> bytes:
    return hashlib.blake2b(f"{unit_key}|{node}".encode(), digest_size=8).digest()


class Processors:
    """A node's reactions and projections: the supervisor of their partitions."""

    def __init__(
        self,
        nc: NATS,
        *,
        node_id: str,
        hosting: Hosting,
        placements: dict[str, KVPlacement],
        config: ProcessingConfig,
        replicas: int,
        timeout: float,
    ) -> None:
        self._nc = nc
        self.node_id = node_id
        self.config = config
        self._placements = placements
        self.units = [
            Unit(hosted.namespace, hosted.context, processor, p)
            for hosted in hosting
            for processor in _processors(hosted.context)
            for p in range(config.partitions)
        ]
        self.feed = Feed(nc, partitions=config.partitions, replicas=replicas, timeout=timeout)
        self.parked = ParkedStore(nc, replicas=replicas, timeout=timeout, remember_for=config.interval / 2)
        self.reader = PartitionReader(nc, feed=self.feed, parked=self.parked, config=config)
        self.owned: dict[str, Partition] = {}
        self.views: dict[tuple[str, str, str], View] = {}

    async def start(self) -> None:
        """Create the feeds and open the projections' views (before the node joins)."""
        for unit in self.units:
            if unit.partition:
                continue
            await self.feed.ensure(unit.namespace, unit.context.name)
            if isinstance(unit.processor, Projection):
                view = await open_view(
                    unit.processor.into, unit.namespace, unit.context.name, unit.processor.name, self._nc
                )
                self.views[(unit.namespace, unit.context.name, unit.processor.name)] = view

    async def supervise(self) -> None:
        """Claim the partitions this node ranks first for, let go of the others; once a `interval`."""
        if not self.units:
            return
        while True:
            try:
                await self.assign()
            except Exception as e:
                logger.warning("assigning reaction and projection partitions failed", error=repr(e))
            await asyncio.sleep(self.config.interval)

    async def assign(self) -> None:
        paused: dict[tuple[str, str, str], bool] = {}
        for unit in self.units:
            if isinstance(unit.processor, Projection):
                where = (unit.namespace, unit.context.name, unit.processor.name)
                if where not in paused:
                    paused[where] = await self.parked.paused(*where)
                if paused[where]:  # being reset: own none of it until it is resumed
                    if (owned := self.owned.get(unit.key)) is not None:
                        await self._let_go(owned)
                    continue
            placement = self._placements[unit.namespace]
            live = [r.node for r in placement.live_nodes(unit.context.name)]
            first = max(live, key=lambda node: _rank(unit.key, node)) if live else None
            owned = self.owned.get(unit.key)
            if owned is not None and owned.task is not None and owned.task.done():
                await self._let_go(owned)  # its reader ended (it failed): claim it again below
                owned = None
            if first == self.node_id and owned is None:
                try:
                    claim = await placement.acquire(unit.key)
                except LeaseHeldError:
                    continue  # its owner lets it go on its next look
                owned = self.owned[unit.key] = Partition(unit, claim.epoch)
                view = self.views.get((unit.namespace, unit.context.name, unit.processor.name))
                owned.task = asyncio.create_task(self.reader.read(owned, view), name=f"radix {unit.key}")
                owned.task.add_done_callback(_retrieved)
                logger.info("partition owned", processor=unit.processor.name, partition=unit.partition)
            elif first != self.node_id and owned is not None:
                await self._let_go(owned)

    async def _let_go(self, owned: Partition) -> None:
        self.owned.pop(owned.unit.key, None)
        task = owned.task
        if task is not None:
            if task.done() and not task.cancelled() and task.exception() is not None:
                logger.warning(
                    "partition reader failed; claiming it again",
                    processor=owned.unit.processor.name,
                    partition=owned.unit.partition,
                    error=repr(task.exception()),
                )
            owned.stopping = True
            task.cancel()
            done, _ = await asyncio.wait([task], timeout=_LET_GO_WAIT)
            if not done:  # what it was doing is read again by the next owner; only the lease is let go now
                logger.warning("partition reader did not stop in time", processor=owned.unit.processor.name)
        await self._placements[owned.unit.namespace].release(owned.unit.key, owned.epoch)

    def step_down(self, namespace: str) -> None:
        """Stop reading the namespace's partitions at once: this node's liveness lapsed, others may own them."""
        for owned in [o for o in self.owned.values() if o.unit.namespace == namespace]:
            self.owned.pop(owned.unit.key, None)
            owned.stopping = True
            if owned.task is not None:
                owned.task.cancel()

    async def stop(self) -> None:
        """Stop every reader (what they were handling is read again by the next owner) and let go: all are
        cancelled at once and given `_LET_GO_WAIT` seconds together, so a stop takes that long at most."""
        owned, self.owned = list(self.owned.values()), {}
        tasks = [o.task for o in owned if o.task is not None]
        for each in owned:
            each.stopping = True
        for task in tasks:
            task.cancel()
        if tasks:
            _, running = await asyncio.wait(tasks, timeout=_LET_GO_WAIT)
            if running:
                logger.warning("partition readers did not stop in time", readers=len(running))
        for each in owned:
            await self._placements[each.unit.namespace].release(each.unit.key, each.epoch)
        for view in self.views.values():
            await view.close()
        await self.parked.close()

    def report(self) -> list[dict[str, Any]]:
        """Each owned partition: its processor, position, lag and parked count (for `radix status`)."""
        return [
            {
                "namespace": o.unit.namespace,
                "context": o.unit.context.name,
                "name": o.unit.processor.name,
                "kind": o.unit.kind,
                "partition": o.unit.partition,
                "position": o.position,
                "lag": o.lag,
                "handled": o.handled,
                "parked": o.parked,
            }
            for o in sorted(self.owned.values(), key=lambda o: o.unit.key)
        ]


def _retrieved(task: asyncio.Task[None]) -> None:
    """Take a finished reader's exception, so that one ended by a lost connection at shutdown is not
    reported as never retrieved (one that failed while running is logged when it is let go)."""
    if not task.cancelled():
        task.exception()


def _processors(context: BoundedContext) -> list[Reaction | Projection]:
    """What the nodes run: the live reactions (the others run on demand, by `radix merge`) and the projections."""
    return [*(r for r in context.reactions if r.live), *context.projections]
