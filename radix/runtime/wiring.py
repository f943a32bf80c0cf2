"""Wiring a node: connecting and starting every part in order, each with its undo, so that whatever was
started is stopped in reverse order (on a stop, and on a start that fails half way).

The order, and so the reverse order of stopping: the connection, the stores and the command log (and
the contexts' event schemas, registered or checked: a node that disagrees with the registry stops here); in
each namespace the placement (its shard counts agreed, its watches), the node's inbox, then its
registration, and the heartbeat; the streams; the background loops (rebalancing, the idle sweep); the actors
(and, once they have stopped, the release of the shards); intake from the queue groups; micro and
metrics. Stopping thus takes no more commands first, lets the actors finish while
the heartbeat still runs, and leaves the namespaces last.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from nats.aio.client import Client as NATS
from nats.aio.subscription import Subscription

from radix import wire
from radix.errors import RadixError
from radix.observability.logs import logged, logger
from radix.observability.metrics import Metrics
from radix.runtime.actor import AggregateActor
from radix.runtime.actors import Actors
from radix.runtime.answers import Replies
from radix.runtime.checks import check_server, read_varz, unsafe_settings
from radix.runtime.config import DEFAULT_SHARDS, NodeConfig
from radix.runtime.control import Control
from radix.runtime.hosting import Hosting
from radix.runtime.intake import Intake
from radix.runtime.leases import NodeLeases
from radix.runtime.mailbox import Envelope
from radix.runtime.membership import Membership
from radix.runtime.migration import Migrations
from radix.runtime.ports import ActorSettings, Stats
from radix.runtime.processors import Processors
from radix.runtime.router import Router
from radix.runtime.telemetry import Telemetry
from radix.store.commandlog import CommandLog
from radix.store.jetstream import JetStreamEventStore
from radix.store.placement import KVPlacement
from radix.store.refusals import KVRefusalStore
from radix.store.schemas import KVSchemaRegistry, register
from radix.store.snapshots import KVSnapshotStore
from radix.transport.connection import ConnectOptions, connect
from radix.wire.names import COMMANDS, READS, context_filter, node_inbox_filter, queue_group

__all__ = ["NodeHooks", "Parts", "wire_node"]


class NodeHooks(Protocol):
    """What the wiring needs of its node: its counters, its state, and its requests."""

    @property
    def metrics(self) -> Metrics: ...

    @property
    def stats(self) -> Stats: ...

    @property
    def counts(self) -> Counter[str]: ...

    def running(self) -> bool:
        """Whether the node takes new aggregates (not draining or stopping)."""
        ...

    def serving(self) -> bool:
        """Whether the node serves or is about to (starting, running, draining): it registers again after
        losing liveness."""
        ...

    def status(self) -> wire.StatusReport: ...

    def request_drain(self) -> None: ...

    def connection_closed(self) -> None:
        """The node's own connection closed for good: it cannot serve any more."""
        ...


@dataclass(frozen=True)
class Parts:
    """A started node's parts, made together once connected."""

    nc: NATS
    store: JetStreamEventStore
    snapshots: KVSnapshotStore
    placements: dict[str, KVPlacement]
    leases: NodeLeases
    actors: Actors
    migrations: Migrations
    telemetry: Telemetry
    processors: Processors
    command_subs: list[Subscription]

    async def stop_intake(self) -> None:
        """Take no more commands from the queue groups (those already delivered are handled)."""
        subs, self.command_subs[:] = list(self.command_subs), []
        for sub in subs:
            try:
                await sub.drain()  # type: ignore[no-untyped-call]  # nats-py leaves it untyped
            except Exception as e:
                logger.warning("could not drain a subscription", error=repr(e))

    def lost_liveness(self, namespace: str) -> None:
        """Step down from every aggregate of the namespace at once: others may own them now."""
        self.actors.revoke(namespace)
        self.leases.forget(namespace)
        self.processors.step_down(namespace)


async def wire_node(
    nats: NATS | ConnectOptions,
    *,
    config: NodeConfig,
    hosting: Hosting,
    hooks: NodeHooks,
    group: asyncio.TaskGroup,
    stack: contextlib.AsyncExitStack,
    closing: contextlib.AsyncExitStack,
) -> Parts:
    """Connect and start every part of a node, each undo pushed on `stack` as it is started; every task
    goes to `group`. The connection's close goes on `closing`, undone once the group's tasks have ended
    (a forward or a snapshot write still running needs it)."""
    node_id = config.node_id
    if isinstance(nats, ConnectOptions):
        nc = await connect(nats, name=f"radix {node_id}", on_closed=hooks.connection_closed)
        closing.push_async_callback(_undo, "closing the connection", nc.close)
    else:
        nc = nats
    await check_server(nc)
    varz = await read_varz(config.server_monitor) if config.server_monitor else None
    unsafe = unsafe_settings(nc, config.store, varz)
    for warning in unsafe:
        logger.warning("unsafe settings", reason=warning)
    if unsafe and config.strict:
        raise RadixError(f"refusing to start on unsafe settings (strict): {'; '.join(unsafe)}")
    replicas, timeout = config.store.replicas, config.store.timeout
    store = JetStreamEventStore(nc, config=config.store)
    snapshots = KVSnapshotStore(nc, replicas=replicas, timeout=timeout)
    refusals = KVRefusalStore(nc, replicas=replicas, timeout=timeout)
    command_log = CommandLog(nc, max_age=config.command_log.max_age, replicas=replicas)
    registry = KVSchemaRegistry(nc, replicas=replicas, timeout=timeout)
    for close in (store.close, snapshots.close, refusals.close, registry.close):
        stack.push_async_callback(_undo, "closing the stores", close)
    for hosted in hosting:  # before it joins: a node whose events disagree with the registry does not start
        await register(registry, hosted.namespace, hosted.context, node_id)
    await command_log.start(group)
    stack.push_async_callback(_undo, "flushing the command log", command_log.flush, config.command_log.flush_timeout)

    placements: dict[str, KVPlacement] = {}
    for namespace in hosting.namespaces:
        placement = placements[namespace] = KVPlacement(
            nc,
            namespace,
            node_id,
            hosting.contexts(namespace),
            ttl=config.placement.liveness_ttl,
            replicas=replicas,
            timeout=timeout,
        )
        await placement.open()
        for context in hosting.contexts(namespace):  # before any aggregate is placed: every node agrees
            shards = await placement.agree_shards(context, config.placement.shards, DEFAULT_SHARDS)
            hosting.agreed(namespace, context, shards)
        watches = [group.create_task(logged(w)) for w in (placement.watch_nodes(), placement.watch_leases())]
        stack.callback(_cancel, watches)
        await placement.wait_ready()

    membership = Membership(
        placements,
        ttl=config.placement.liveness_ttl,
        on_lost=lambda namespace: parts.lost_liveness(namespace),  # bound late: parts exist before any renewal
        serving=hooks.serving,
        group=group,
    )
    pace = asyncio.Semaphore(config.placement.handoff_concurrency)  # stopping many actors must not starve
    leases = NodeLeases(placements, hosting, renew=membership.renew, pace=pace)
    replies = Replies(
        nc, node_id=node_id, hosting=hosting, command_log=command_log, metrics=hooks.metrics, counts=hooks.counts
    )

    def reroute(actor: AggregateActor, leftovers: list[Envelope]) -> Awaitable[None]:
        return router.reroute(actor, leftovers)

    actors = Actors(
        node_id=node_id,
        hosting=hosting,
        settings=ActorSettings.of(config.actors, nc.max_payload),
        events=store,
        snapshots=snapshots,
        refusals=refusals,
        leases=leases,
        answers=replies,
        stats=hooks.stats,
        group=group,
        pace=pace,
        reroute=reroute,
    )
    migrations = Migrations(
        node_id=node_id,
        hosting=hosting,
        placements=placements,
        actors=actors,
        leases=leases,
        config=config.placement,
        wait=config.shutdown_timeout,
        running=hooks.running,
    )
    router = Router(
        nc,
        hosting=hosting,
        actors=actors,
        placements=placements,
        replies=replies,
        config=config.placement,
        target=migrations.target,
        running=hooks.running,
    )
    intake = Intake(hosting, config.intake, replies=replies, metrics=hooks.metrics, route=router.route)
    control = Control(
        nc,
        node_id=node_id,
        take=intake.take,
        status=hooks.status,
        migrate=lambda address, to: migrations.migrate(address, to=to),
        drain=hooks.request_drain,
        spawn=actors.spawn,
    )
    processors = Processors(
        nc,
        node_id=node_id,
        hosting=hosting,
        placements=placements,
        config=config.processing,
        replicas=replicas,
        timeout=timeout,
    )
    telemetry = Telemetry(
        node_id=node_id,
        hosting=hosting,
        metrics=hooks.metrics,
        stats=hooks.stats,
        live=actors.__len__,
        processors=processors.report,
    )
    parts = Parts(nc, store, snapshots, placements, leases, actors, migrations, telemetry, processors, [])

    for namespace, placement in placements.items():
        # The inbox first: a node that is live (registered) always listens, so nobody listening on a live
        # node's inbox means it is gone (`KVPlacement.presume_dead`); on a stop, it leaves before it stops
        # listening.
        inbox = await nc.subscribe(node_inbox_filter(namespace, node_id), cb=control.on_inbox)
        stack.push_async_callback(_undo, "leaving the node inbox", _unsubscribe, nc, inbox)
        await nc.flush()
        placement.on_evicted = _renewing(group, membership, namespace)
        placement.on_gone = _taking_over(group, migrations, namespace)
        await placement.register()
        stack.push_async_callback(_undo, "leaving", placement.deregister)
        await refusals.bucket(namespace)
    # Renewed from its registration on: creating streams on a cluster can outlast a liveness TTL.
    heartbeat = group.create_task(logged(membership.heartbeat()))
    stack.callback(_cancel, [heartbeat])
    for hosted in hosting:
        await store.ensure_stream(hosted.namespace, hosted.context.name)
        await command_log.ensure_stream(hosted.namespace, hosted.context.name)
        if config.actors.snapshot_every > 0 and any(f is not None for f in hosted.fingerprints.values()):
            await snapshots.bucket(hosted.namespace)
    await processors.start()
    loops = [group.create_task(logged(loop)) for loop in (migrations.rebalance(), actors.passivate_idle())]
    stack.callback(_cancel, loops)
    stack.push_async_callback(_undo, "releasing the shards", leases.release_all)
    stack.push_async_callback(_undo, "stopping the actors", actors.stop_all, config.shutdown_timeout)
    for hosted in hosting:
        ns, ctx = hosted.namespace, hosted.context.name
        for kind, callback in ((COMMANDS, intake.on_command), (READS, intake.on_read)):
            sub = await nc.subscribe(context_filter(ns, ctx, kind), queue=queue_group(ns, ctx), cb=callback)
            parts.command_subs.append(sub)
    stack.push_async_callback(_undo, "stopping intake", parts.stop_intake)
    # Reactions and projections stop first: a reaction's command still finds the aggregates served.
    supervisor = group.create_task(logged(processors.supervise()))
    stack.push_async_callback(_undo, "stopping the reactions and projections", _stop_processors, supervisor, processors)
    await telemetry.start_micro(nc)
    stack.push_async_callback(_undo, "stopping micro", telemetry.stop_micro)
    telemetry.serve_metrics(config.metrics)
    stack.callback(telemetry.stop_metrics)
    # Subscriptions are live once the server has seen them: a command sent right after start is heard.
    await nc.flush()
    return parts


async def _undo(what: str, step: Callable[..., Awaitable[object]], *args: object) -> None:
    """One step of unwinding a node; a failure is logged and the unwinding goes on."""
    try:
        await step(*args)
    except Exception:
        logger.exception(f"{what} failed")


async def _stop_processors(supervisor: asyncio.Task[None], processors: Processors) -> None:
    supervisor.cancel()
    await asyncio.gather(supervisor, return_exceptions=True)
    await processors.stop()


def _renewing(group: asyncio.TaskGroup, membership: Membership, namespace: str) -> Callable[[], object]:
    """What a node does when it sees its liveness key deleted by another: renew at once, which fails, and
    so steps down and registers again (`Membership`)."""
    return lambda: group.create_task(membership.renew(namespace))


def _taking_over(group: asyncio.TaskGroup, migrations: Migrations, namespace: str) -> Callable[[str], object]:
    """What a node does when another is gone: take its part of the gone node's shards over at once."""
    return lambda node: group.create_task(logged(migrations.take_over(namespace)))


def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()


async def _unsubscribe(nc: NATS, sub: Subscription) -> None:
    if not nc.is_closed:
        await sub.unsubscribe()
