"""The node: one process's share of the runtime, its lifecycle and the wiring of its parts.

A node connects to NATS, hosts bounded contexts in namespaces, and serves commands sent to
`radix.{ns}.{ctx}.cmd.{Type}.{id}` in one queue group per (namespace, context), so every
node of a context shares the work. The parts it wires (docs/architecture.md):

    intake -> router -> actors (each: turns of the command algorithm) -> answers
    membership (liveness), leases, migration (drain, rebalance, moves), control (its inbox),
    telemetry (micro, Prometheus), over the store's adapters

One supervisor task owns the node's task group: every task of the node (actors, forwards,
background loops) belongs to it. Whatever was started is stopped in reverse order, whether
the node stops, drains or fails to start.

    async with Node({"prod": [inventory]}, nats=ConnectOptions(servers=[url])) as node:
        await node.wait_stopped()      # or: await Node(...).run()
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
import weakref
from collections import Counter
from collections.abc import Coroutine, Mapping, Sequence
from contextvars import Context
from typing import Any, Self, TypeVar

from nats.aio.client import Client as NATS

from radix import wire
from radix.domain import BoundedContext
from radix.errors import RadixError
from radix.observability.logs import bind, logged, logger
from radix.observability.metrics import Metrics
from radix.runtime.config import NodeConfig
from radix.runtime.hosting import Hosting
from radix.runtime.lifecycle import Service
from radix.runtime.ports import Stats
from radix.runtime.wiring import Parts, wire_node
from radix.store.jetstream import JetStreamEventStore
from radix.store.placement import KVPlacement
from radix.store.snapshots import KVSnapshotStore
from radix.transport.connection import ConnectOptions
from radix.wire.names import Address

__all__ = ["Node", "NodeState"]

T = TypeVar("T")


class NodeState(enum.Enum):
    """Where a node is in its life; `status()` reports the value."""

    NEW = "new"
    STARTING = "starting"
    RUNNING = "running"
    DRAINING = "draining"
    STOPPING = "stopping"
    STOPPED = "stopped"


class _Tasks(asyncio.TaskGroup):
    """A node's task group, which knows its own tasks: a stop asked from one of them cannot wait for the
    node to stop, since the node waits for them."""

    def __init__(self) -> None:
        super().__init__()
        self.own: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet()

    def create_task(  # type: ignore[override]  # typeshed's coroutine type is private; this is one of its cases
        self, coro: Coroutine[Any, Any, T], *, name: str | None = None, context: Context | None = None
    ) -> asyncio.Task[T]:
        task = super().create_task(coro, name=name, context=context)
        self.own.add(task)
        return task


class Node(Service):
    """Hosts bounded contexts in namespaces and serves their commands."""

    def __init__(
        self,
        hosts: Mapping[str, Sequence[BoundedContext]],
        *,
        nats: NATS | ConnectOptions,
        config: NodeConfig | None = None,
    ) -> None:
        self.config = config or NodeConfig()
        self.node_id = self.config.node_id
        self._hosting = Hosting(hosts)
        self._connect = nats
        self._state = NodeState.NEW
        self._parts: Parts | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._tasks: _Tasks | None = None
        self._ready: asyncio.Future[None] | None = None
        self._start_error: Exception | None = None
        self._asked = asyncio.Event()  # a drain or a stop was asked for
        self._drain_asked = False
        self._stop_asked = asyncio.Event()
        self._stopped = asyncio.Event()
        self.stats = Stats()
        self.metrics = Metrics()
        self.counts: Counter[str] = Counter()  # replies sent, by status
        self.failure: str | None = None
        """Why the node stopped of itself (its connection closed for good), if it did: `radix node` exits 1."""

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def state(self) -> NodeState:
        return self._state

    async def start(self) -> Self:
        """Connect, register, create streams and buckets, and start serving commands. Idempotent.

        If starting fails, whatever was started is stopped again before the error is raised.
        """
        if self._state is NodeState.NEW:
            self._state = NodeState.STARTING
            self._ready = asyncio.get_running_loop().create_future()
            self._supervisor = asyncio.create_task(self._supervise(), name=f"radix node {self.node_id}")
            self._supervisor.add_done_callback(self._supervised)
        if self._state is not NodeState.STARTING:
            return self
        assert self._ready is not None
        assert self._supervisor is not None
        try:
            await asyncio.wait([self._ready, self._supervisor], return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            self.request_stop()  # whoever started it is gone: do not leave it running
            raise
        if self._start_error is not None:
            raise self._start_error
        return self  # running, or stopped if a stop was asked for while it started

    def request_drain(self) -> None:
        """Ask the node to hand its aggregates to other nodes, then stop; returns at once. A node still
        starting (waiting for NATS, say) holds no aggregate yet: it stops."""
        if self._state is NodeState.STARTING:
            self.request_stop()
        elif not self._asked.is_set():
            self._drain_asked = True
            self._asked.set()

    def connection_closed(self) -> None:
        """The node's own connection closed for good (not by its stop): nothing can be served or written any
        more, so the node stops, and says why."""
        if self._state in (NodeState.STARTING, NodeState.RUNNING) and not self._stop_asked.is_set():
            self.failure = "its NATS connection closed for good"
            error = self.nc.last_error if self._parts is not None else None
            logger.error(
                "the NATS connection closed for good: stopping (a supervisor should start the node again)",
                error=repr(error) if error else None,
            )
            self.request_stop()

    def request_stop(self) -> None:
        """Ask the node to stop (cutting a drain short, or a start still under way); returns at once."""
        self._stop_asked.set()
        self._asked.set()
        if self._state is NodeState.STARTING and self._parts is None and self._supervisor is not None:
            self._supervisor.cancel()  # still connecting or setting up: what was started unwinds

    async def drain(self) -> None:
        """Hand every live aggregate to other nodes, then stop. What SIGTERM does."""
        if self._state is not NodeState.RUNNING:
            await self.stop()
            return
        self.request_drain()
        await self._until_stopped()

    async def stop(self) -> None:
        """Stop intake, finish every queued command, write snapshots, release leases, leave. Idempotent, and
        safe from any task: from one of the node's own, it asks for the stop and returns at once."""
        if self._state is NodeState.NEW:
            self._state = NodeState.STOPPED
            self._stopped.set()
            return
        self.request_stop()
        await self._until_stopped()

    async def _until_stopped(self) -> None:
        current = asyncio.current_task()
        if current is self._supervisor or (self._tasks is not None and current in self._tasks.own):
            return
        await self._stopped.wait()

    async def wait_stopped(self) -> None:
        """Wait until the node has stopped."""
        await self._stopped.wait()

    async def run(self) -> None:
        """Start, serve until cancelled or drained, then stop gracefully."""
        await self.start()
        try:
            await self.wait_stopped()
        finally:
            await asyncio.shield(self.stop())

    def _supervised(self, supervisor: asyncio.Task[None]) -> None:
        """The supervisor ended: the node is stopped (also when a stop cancelled it before its first step)."""
        self._state = NodeState.STOPPED
        self._stopped.set()

    async def _supervise(self) -> None:
        """Own the node's task group: wire the parts, serve until asked to stop, unwind in reverse order."""
        bind(node=self.node_id)
        try:
            async with (
                contextlib.AsyncExitStack() as closing,
                _Tasks() as group,
                contextlib.AsyncExitStack() as stack,
            ):
                self._tasks = group
                try:
                    self._parts = await wire_node(
                        self._connect,
                        config=self.config,
                        hosting=self._hosting,
                        hooks=self,
                        group=group,
                        stack=stack,
                        closing=closing,
                    )
                except Exception as e:
                    self._start_error = e
                    return  # what was started unwinds with the stack
                self._state = NodeState.RUNNING
                assert self._ready is not None
                self._ready.set_result(None)
                logger.info("node started", hosts=self._hosting.labels)
                await self._asked.wait()
                if self._drain_asked and not self._stop_asked.is_set():
                    await self._drain(group)
                self._state = NodeState.STOPPING
        except BaseExceptionGroup as failed:
            logger.error("node tasks failed", errors=[repr(e) for e in failed.exceptions])
        finally:
            self._state = NodeState.STOPPED
            self._stopped.set()
            logger.info("node stopped", commands=dict(self.counts))

    async def _drain(self, group: asyncio.TaskGroup) -> None:
        parts = self._parts
        assert parts is not None
        self._state = NodeState.DRAINING
        started = time.monotonic()
        logger.info("draining", live_actors=len(parts.actors))
        await parts.stop_intake()
        handoffs = group.create_task(logged(parts.migrations.hand_off_all(), "handing off failed"))
        interrupted = group.create_task(self._stop_asked.wait())
        await asyncio.wait([handoffs, interrupted], return_when=asyncio.FIRST_COMPLETED)
        handoffs.cancel()
        interrupted.cancel()
        pauses = sorted(self.stats.pauses)
        logger.info(
            "drained",
            seconds=round(time.monotonic() - started, 3),
            migrations=self.stats.migrations,
            pause_ms_p50=_ms(pauses, 0.5),
            pause_ms_p99=_ms(pauses, 0.99),
            pause_ms_max=_ms(pauses, 1.0),
        )

    def running(self) -> bool:
        """Whether the node takes new aggregates (it is neither draining nor stopping)."""
        return self._state is NodeState.RUNNING

    def serving(self) -> bool:
        """Whether the node serves commands, or is about to (starting, running or draining): one that loses
        its liveness then registers again."""
        return self._state in (NodeState.STARTING, NodeState.RUNNING, NodeState.DRAINING)

    # -- what a node tells of itself -------------------------------------------------------

    def _started(self) -> Parts:
        if self._parts is None:
            raise RadixError(f"node {self.node_id} is not started: start it first (async with Node(...))")
        return self._parts

    @property
    def nc(self) -> NATS:
        return self._started().nc

    @property
    def store(self) -> JetStreamEventStore:
        """The node's event store."""
        return self._started().store

    @property
    def snapshots(self) -> KVSnapshotStore:
        """The node's snapshot store."""
        return self._started().snapshots

    def placement(self, namespace: str) -> KVPlacement:
        """This node's view of membership and leases in a namespace."""
        return self._started().placements[namespace]

    def lease_key(self, address: Address) -> str:
        """The key of the lease of the aggregate's shard."""
        return self._hosting.lease_key(address)

    @property
    def live_actors(self) -> int:
        """How many aggregates are live on this node."""
        return len(self._parts.actors) if self._parts is not None else 0

    def is_live(self, address: Address) -> bool:
        return self._parts is not None and address in self._parts.actors

    def queued(self, address: Address) -> int:
        """How many requests wait in the mailbox of the aggregate's live actor (0 if it is not live here)."""
        actor = self._parts.actors.peek(address) if self._parts is not None else None
        return len(actor.mailbox) if actor is not None else 0

    async def migrate(self, address: Address, *, to: str | None = None) -> wire.ControlAnswer:
        """Move a live aggregate of this node to another node (`to`, or the least loaded)."""
        return await self._started().migrations.migrate(address, to=to)

    @property
    def metrics_url(self) -> str | None:
        """Where Prometheus metrics are served, if they are."""
        return self._parts.telemetry.metrics_url if self._parts is not None else None

    def status(self) -> wire.StatusReport:
        """What this node is doing: its incarnations, shards and live aggregates per context, command counts."""
        parts = self._parts
        return wire.StatusReport(
            node=self.node_id,
            incarnation={ns: p.incarnation for ns, p in parts.placements.items()} if parts else {},
            state=self._state.value,
            hosts=self._hosting.labels,
            live_actors=self.live_actors,
            actors=dict(parts.actors.per_context()) if parts else {},
            commands=dict(self.counts),
            activations=self.stats.activations,
            passivations=self.stats.passivations,
            migrations=self.stats.migrations,
            fenced=self.stats.fenced,
            rate=round(self.metrics.rate(), 1),
            replayed_events=self.stats.replayed_events,
            snapshots_loaded=self.stats.snapshots_loaded,
            processors=parts.processors.report() if parts else [],
            shards=dict(parts.leases.shards()) if parts else {},
        )


def _ms(ordered: Sequence[float], quantile: float) -> float | None:
    """A quantile of sorted durations in seconds, in milliseconds."""
    if not ordered:
        return None
    return round(1000 * ordered[min(len(ordered) - 1, round(quantile * (len(ordered) - 1)))], 2)
