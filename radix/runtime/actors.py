"""The live actors of a node: created on a command's arrival, run as tasks of the node's task group while
their mailbox holds something, parked otherwise, passivated when idle or past `max_actors`, and settled
when they end (the lease released or let go, what they had queued handed on).

`Actors` is also the actors' `Scheduler` port. The in-memory runtime (`radix.testing`) uses it as the
node does.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from radix.observability.logs import logged
from radix.runtime.actor import AggregateActor
from radix.runtime.hosting import Hosting
from radix.runtime.leases import NodeLeases
from radix.runtime.mailbox import PASSIVATE, STOP, Envelope
from radix.runtime.ports import ActorPorts, ActorSettings, Answers, Stats
from radix.store.ports import EventStore, RefusalStore, SnapshotStore
from radix.wire.names import Address

__all__ = ["Actors", "Reroute"]

#: Where the commands an ended actor still held go: forwarded to its `hand_to`, or routed afresh.
Reroute = Callable[[AggregateActor, list[Envelope]], Awaitable[None]]


class Actors:
    """A node's live actors, least recently used first."""

    def __init__(
        self,
        *,
        node_id: str,
        hosting: Hosting,
        settings: ActorSettings,
        events: EventStore,
        snapshots: SnapshotStore,
        refusals: RefusalStore,
        leases: NodeLeases,
        answers: Answers,
        stats: Stats,
        group: asyncio.TaskGroup,
        pace: asyncio.Semaphore,
        reroute: Reroute,
    ) -> None:
        self.ports = ActorPorts(node_id, settings, events, snapshots, refusals, leases, answers, self, stats)
        self._hosting = hosting
        self._leases = leases
        self._group = group
        self._pace = pace
        self._reroute = reroute
        self._live: dict[Address, AggregateActor] = {}  # ordered by last use
        self._running: dict[AggregateActor, asyncio.Task[None]] = {}  # actors with a task now (not parked)
        self._settling: set[asyncio.Task[None]] = set()

    # -- the registry ----------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, address: Address) -> bool:
        return address in self._live

    def get(self, address: Address) -> AggregateActor | None:
        """The aggregate's live actor, marked as used now; None if it is not live here."""
        actor = self._live.pop(address, None)
        if actor is not None:
            self._live[address] = actor  # re-inserted: the dict's order is least recently used first
        return actor

    def peek(self, address: Address) -> AggregateActor | None:
        """The aggregate's live actor, without marking it used."""
        return self._live.get(address)

    def activate(self, address: Address) -> AggregateActor:
        """A new actor for the aggregate (it claims the lease and loads when its first command is posted)."""
        actor = AggregateActor(address, self._hosting.codec(address), self._hosting.fingerprint(address), self.ports)
        if len(self._live) >= self.ports.settings.max_actors:
            self._passivate_least_recently_used()
        self._live[address] = actor
        return actor

    def all(self) -> list[AggregateActor]:
        return list(self._live.values())

    def per_context(self) -> Counter[str]:
        """Live aggregates per `namespace/context`."""
        return Counter(f"{a.namespace}/{a.context}" for a in self._live)

    def task(self, actor: AggregateActor) -> asyncio.Task[None] | None:
        """The actor's task, if it is running."""
        return self._running.get(actor)

    def drop(self, actor: AggregateActor) -> None:
        """Forget the actor (new commands for its aggregate activate a fresh one)."""
        if self._live.get(actor.address) is actor:
            del self._live[actor.address]

    def _passivate_least_recently_used(self) -> None:
        excess = len(self._live) + 1 - self.ports.settings.max_actors
        for actor in list(self._live.values()):
            if excess <= 0:
                break
            if not actor.busy and actor.mailbox.empty():
                actor.post(STOP)
                del self._live[actor.address]
                excess -= 1

    # -- the Scheduler port ----------------------------------------------------------------

    @property
    def pace(self) -> asyncio.Semaphore:
        return self._pace

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        self._group.create_task(logged(coroutine))

    def wake(self, actor: AggregateActor) -> None:
        # Logged, never propagated: a failing actor ends (and settles), the node goes on.
        self._running[actor] = self._group.create_task(logged(actor.run(), "actor failed"))

    def parked(self, actor: AggregateActor) -> None:
        self._running.pop(actor, None)

    def ended(self, actor: AggregateActor) -> None:
        self.drop(actor)
        self._running.pop(actor, None)
        task = self._group.create_task(logged(self._settle(actor)))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def _settle(self, actor: AggregateActor) -> None:
        """Release the lease of an actor that ended, or let it go; hand on what it had queued."""
        leftovers = actor.take_leftovers()
        await self._leases.settle(actor, actor.ending)
        await self._reroute(actor, leftovers)

    # -- sweeping and stopping -------------------------------------------------------------

    async def passivate_idle(self) -> None:
        """Ask parked actors idle for `idle_timeout` to passivate, least recently used first (runs for good).

        The registry is ordered by last use, so each sweep looks only at the actors it passivates
        and one more: no timer per actor.
        """
        timeout = self.ports.settings.idle_timeout
        while True:
            await asyncio.sleep(min(max(timeout / 4, 0.05), 10.0))
            horizon = time.monotonic() - timeout
            for actor in self._live.values():
                if actor.last_active > horizon:
                    break
                if not actor.running:
                    actor.post(PASSIVATE)

    def revoke(self, namespace: str) -> list[AggregateActor]:
        """Step every actor of a namespace down at once (its node lost liveness): they write nothing more,
        and hand on what they hold. Returns them."""
        revoked = [a for a in self._live.values() if a.address.namespace == namespace]
        for actor in revoked:
            actor.revoked = True
            actor.post(STOP)  # wake it, so it hands on what it holds and ends
            self.drop(actor)
        return revoked

    async def stop_all(self, timeout: float) -> None:
        """Let every actor finish what is queued, snapshot and end; cancel those still running after `timeout`."""
        for actor in list(self._live.values()):
            actor.post(STOP)
        tasks = list(self._running.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:  # let them run their `finally`, which settles them (their leases, their leftovers)
                await asyncio.wait(pending)
        await self.settled(timeout)

    async def settled(self, timeout: float) -> None:
        """Let the tasks that settle ended actors (lease releases, forwards) finish."""
        for _ in range(100):  # settling may stop more actors (forwards re-route): repeat until none is left
            if not self._settling:
                return
            await asyncio.wait(list(self._settling), timeout=timeout)
