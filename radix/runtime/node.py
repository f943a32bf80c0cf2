"""The node: one process's share of the runtime.

A node connects to NATS, hosts bounded contexts in namespaces, and serves commands
sent to `radix.{ns}.{ctx}.cmd.{Type}.{id}` in one queue group per (namespace,
context), so every node of a context shares the work. Each live aggregate is an
actor on exactly one node, the holder of its lease (see `radix.runtime.placement`):
a node that receives a command for an aggregate owned elsewhere forwards it to the
owner's inbox with the original reply subject, so the owner answers the client
directly. The subscription callbacks only parse, validate and queue, so one slow
aggregate never holds up the others.

    async with Node({"prod": [inventory]}, nats=ConnectOptions(servers=[url])) as node:
        await node.wait_stopped()      # or: await Node(...).run()
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Self

import msgspec
import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import errors as js_errors
from nats.micro.service import EndpointInfo, EndpointStats
from prometheus_client import CollectorRegistry, start_http_server

from radix import wire
from radix._inbox import Inbox
from radix._publish import encode_headers, publish
from radix.connection import ConnectOptions, connect
from radix.domain import AggregateCodec, BoundedContext
from radix.errors import DecodeError, InvalidNameError, RadixError, StoreError, StoreUnavailableError
from radix.logs import logger
from radix.names import (
    Address,
    command_subject,
    context_filter,
    invalid_log_subject,
    log_subject,
    node_inbox,
    validate_namespace,
    validate_node_id,
)
from radix.runtime._actor import (
    PASSIVATE,
    STOP,
    ActorSettings,
    AggregateActor,
    Envelope,
    Move,
    Stats,
    state_fingerprint,
)
from radix.runtime._commandlog import CommandLog
from radix.runtime._micro import MicroResponder
from radix.runtime.metrics import Metrics, PrometheusCollector
from radix.runtime.placement import Claim, LivenessLost, NodeRecord, Placement
from radix.store import JetStreamEventStore, StoreConfig
from radix.store.kv import KeyChanged
from radix.store.memory import DEFAULT_MAX_PAYLOAD
from radix.store.refusals import RefusalStore, refusal_budget
from radix.store.snapshots import KVSnapshotStore

__all__ = ["Node", "NodeConfig"]

MAX_COMMAND_ID_LEN: Final = 128
_FORWARD_OK: Final = b"ok"

#: Command subjects kept validated (with their address and codec), so that busy aggregates' commands
#: skip validation; past it the cache starts again. Not one per live aggregate: that cost an idle
#: actor about 200 bytes.
ROUTES_KEPT: Final = 8192


@dataclass(frozen=True, kw_only=True)
class NodeConfig:
    """How a node runs. Every field has a production default."""

    node_id: str = field(default_factory=lambda: f"node-{secrets.token_hex(3)}")
    idle_timeout: float = 300.0
    max_actors: int = 100_000
    snapshot_every: int = 100
    retries: int = 5
    mailbox_size: int = 1024
    recent_commands: int = 32
    recent_events: int = 256
    group_commit: int = 64
    dedup_window: float = 120.0
    dedup_max: int = 20_000
    max_command_bytes: int = 256 * 1024
    command_log_max_age: float = 7 * 24 * 3600.0
    shutdown_timeout: float = 30.0
    liveness_ttl: int = 3
    max_hops: int = 3
    forward_timeout: float = 1.0
    rebalance_interval: float = 2.0
    rebalance_threshold: float = 0.2
    rebalance_batch: int = 32
    handoff_concurrency: int = 16
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    store: StoreConfig = field(default_factory=StoreConfig)

    def __post_init__(self) -> None:
        validate_node_id(self.node_id)
        if self.idle_timeout <= 0 or self.shutdown_timeout <= 0 or self.command_log_max_age <= 0:
            raise ValueError("idle_timeout, shutdown_timeout and command_log_max_age must be positive")
        if min(self.max_actors, self.mailbox_size, self.recent_commands, self.recent_events, self.group_commit) < 1:
            raise ValueError("max_actors, mailbox_size, recent_commands and recent_events must be at least 1")
        if self.dedup_window <= 0 or self.dedup_max < self.recent_commands:
            raise ValueError("dedup_window must be positive, and dedup_max at least recent_commands")
        if self.snapshot_every < 0 or self.retries < 0 or self.max_command_bytes < 1:
            raise ValueError("snapshot_every and retries must be 0 or more, max_command_bytes positive")
        if not isinstance(self.liveness_ttl, int) or self.liveness_ttl < 1:
            raise ValueError("liveness_ttl is whole seconds, at least 1 (JetStream's per-key TTL granularity)")
        if self.max_hops < 1 or self.forward_timeout <= 0 or self.rebalance_interval <= 0:
            raise ValueError("max_hops, forward_timeout and rebalance_interval must be positive")
        if self.rebalance_threshold < 0 or self.rebalance_batch < 0 or self.handoff_concurrency < 1:
            raise ValueError("rebalance_threshold and rebalance_batch must be 0 or more, handoff_concurrency positive")

    def actor_settings(self, max_payload: int = DEFAULT_MAX_PAYLOAD) -> ActorSettings:
        """What actors need of this configuration, on a server whose messages carry `max_payload` bytes."""
        return ActorSettings(
            idle_timeout=self.idle_timeout,
            snapshot_every=self.snapshot_every,
            retries=self.retries,
            mailbox_size=self.mailbox_size,
            recent_commands=self.recent_commands,
            recent_events=self.recent_events,
            group_commit=self.group_commit,
            dedup_window=self.dedup_window,
            dedup_max=self.dedup_max,
            refusal_bytes=refusal_budget(max_payload, self.recent_commands),
        )


@dataclass(frozen=True)
class _Hosted:
    namespace: str
    context: BoundedContext
    fingerprints: dict[str, str | None]


@dataclass(slots=True)
class _Lease:
    """A lease this node holds: its epoch, the live actors under it, and a release in flight."""

    epoch: int
    taken_over: bool = False  # from a node presumed dead, which may still be writing
    actors: tuple[AggregateActor, ...] = ()  # nearly always one: a tuple is the lightest
    releasing: asyncio.Future[None] | None = None


class _BadRequest(Exception):
    def __init__(self, reason: str, *, command_id: str, type_name: str | None, address: Address | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.command_id = command_id
        self.type_name = type_name
        self.address = address


class _Status(msgspec.Struct):
    node: str
    incarnation: dict[str, str]
    state: str
    hosts: list[str]
    live_actors: int
    actors: dict[str, int]
    commands: dict[str, int]
    activations: int
    passivations: int
    migrations: int
    fenced: int
    rate: float


class _MigrateRequest(msgspec.Struct):
    context: str
    aggregate_type: str
    aggregate_id: str
    to: str | None = None


_json: Final = msgspec.json.Encoder()
_migrate_decoder: Final = msgspec.json.Decoder(_MigrateRequest)


class Node:
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
        self._hosted: dict[tuple[str, str], _Hosted] = {}
        for namespace, contexts in hosts.items():
            validate_namespace(namespace)
            for context in contexts:
                fingerprints = {name: state_fingerprint(codec) for name, codec in context.codecs.items()}
                self._hosted[(namespace, context.name)] = _Hosted(namespace, context, fingerprints)
        if not self._hosted:
            raise ValueError("a node needs at least one namespace with at least one context")
        self._connect = nats
        self._nc: NATS | None = nats if not isinstance(nats, ConnectOptions) else None
        self._settings: ActorSettings  # at start, once the server's max_payload is known
        self._actors: dict[Address, AggregateActor] = {}
        self._actor_tasks: dict[AggregateActor, asyncio.Task[None]] = {}  # actors running now (not parked)
        self._held: dict[str, dict[str, _Lease]] = {}  # namespace -> lease key -> lease held
        self._placements: dict[str, Placement] = {}
        self._command_subs: list[Subscription] = []
        self._inbox_subs: list[Subscription] = []
        self._tasks: asyncio.TaskGroup | None = None
        self._background: list[asyncio.Task[None]] = []
        self._state = "new"
        self._stopped = asyncio.Event()
        self._renewing: dict[str, asyncio.Future[bool]] = {}
        self._settle_tasks: set[asyncio.Task[None]] = set()
        self._drain_task: asyncio.Task[None] | None = None
        self._routes: dict[str, tuple[Address, AggregateCodec]] = {}
        # Stopping many actors at once must not flood JetStream and starve the liveness heartbeat.
        self.pace = asyncio.Semaphore(self.config.handoff_concurrency)
        self.counts: Counter[str] = Counter()
        self._reply_headers = {  # by status, encoded once
            status: encode_headers({wire.H_STATUS: status, wire.H_NODE: self.node_id})
            for status in (wire.ACCEPTED, wire.REJECTED, wire.CONFLICT, wire.ERROR)
        }
        self.stats = Stats()
        self.metrics = Metrics()
        self._micro: MicroResponder | None = None
        self._metrics_server: Any = None

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def nc(self) -> NATS:
        if self._nc is None:
            raise RadixError("the node is not started")
        return self._nc

    @property
    def state(self) -> str:
        """new, starting, running, draining, stopping or stopped."""
        return self._state

    async def start(self) -> Self:
        """Connect, register, create streams and buckets, and start serving commands.

        If starting fails, whatever was started is stopped again before the error is raised.
        """
        if self._state != "new":
            return self
        self._state = "starting"
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def _start(self) -> None:
        if self._nc is None:
            assert isinstance(self._connect, ConnectOptions)
            self._nc = await connect(self._connect, name=f"radix {self.node_id}")
        nc = self._nc
        await _check_server(nc)
        self._settings = self.config.actor_settings(nc.max_payload)
        replicas, timeout = self.config.store.replicas, self.config.store.timeout
        self.store = JetStreamEventStore(nc, config=self.config.store)
        self.snapshots = KVSnapshotStore(nc, replicas=replicas, timeout=timeout)
        self.refusals = RefusalStore(nc, replicas=replicas, timeout=timeout)
        self.command_log = CommandLog(nc, max_age=self.config.command_log_max_age, replicas=replicas)
        self._tasks = asyncio.TaskGroup()
        await self._tasks.__aenter__()
        await self.command_log.start()
        for namespace in sorted({ns for ns, _ in self._hosted}):
            contexts = sorted(ctx for ns, ctx in self._hosted if ns == namespace)
            placement = Placement(
                nc,
                namespace,
                self.node_id,
                contexts,
                ttl=self.config.liveness_ttl,
                replicas=replicas,
                timeout=timeout,
            )
            await placement.open()
            self._placements[namespace] = placement
            self._background.append(self._tasks.create_task(_logged(placement.watch_nodes())))
            self._background.append(self._tasks.create_task(_logged(placement.watch_leases())))
            await placement.nodes_ready.wait()
            await placement.leases_ready.wait()
            await placement.register()
            await self.refusals.bucket(namespace)
            self._inbox_subs.append(await nc.subscribe(f"{node_inbox(namespace, self.node_id)}.>", cb=self._on_inbox))
        for (namespace, context), hosted in self._hosted.items():
            await self.store.ensure_stream(namespace, context)
            await self.command_log.ensure_stream(namespace, context)
            if self.config.snapshot_every > 0 and any(f is not None for f in hosted.fingerprints.values()):
                await self.snapshots.bucket(namespace)
        self._background.append(self._tasks.create_task(_logged(self._heartbeat())))
        self._background.append(self._tasks.create_task(_logged(self._rebalance())))
        self._background.append(self._tasks.create_task(_logged(self._passivate_idle())))
        for namespace, context in self._hosted:
            self._command_subs.append(
                await nc.subscribe(
                    context_filter(namespace, context, "cmd"),
                    queue=f"radix.{namespace}.{context}",
                    cb=self._on_command,
                )
            )
        self._micro = MicroResponder(
            nc,
            node_id=self.node_id,
            version=_version(),
            metadata={"node": self.node_id},
            endpoints=self._endpoint_info,
            stats=self._endpoint_stats,
        )
        await self._micro.start()
        if self.config.metrics_port is not None:
            self._serve_metrics(self.config.metrics_host, self.config.metrics_port)
        # Subscriptions are live once the server has seen them: a command sent right after start is heard.
        await nc.flush()
        self._state = "running"
        logger.info("node started", node=self.node_id, hosts=sorted(f"{ns}/{ctx}" for ns, ctx in self._hosted))

    async def drain(self) -> None:
        """Hand every live aggregate to other nodes, then stop. What SIGTERM does."""
        if self._state != "running":
            await self.stop()
            return
        self._state = "draining"
        started = time.monotonic()
        logger.info("draining", live_actors=len(self._actors))
        await self._stop_intake()
        gate = asyncio.Semaphore(self.config.handoff_concurrency)

        async def hand_off(actor: AggregateActor) -> None:
            async with gate:
                target = self._target_for(actor.address)
                move = None if target is None else Move(target.node, target.incarnation, time.monotonic())
                actor.post(STOP if move is None else move)
                task = self._actor_tasks.get(actor)
                if task is not None:
                    await asyncio.wait([task], timeout=self.config.shutdown_timeout)

        await asyncio.gather(*(hand_off(a) for a in list(self._actors.values())))
        pauses = sorted(self.stats.pauses)
        logger.info(
            "drained",
            seconds=round(time.monotonic() - started, 3),
            migrations=self.stats.migrations,
            pause_ms_p50=_ms(pauses, 0.5),
            pause_ms_p99=_ms(pauses, 0.99),
            pause_ms_max=_ms(pauses, 1.0),
        )
        await self.stop()

    async def _stop_intake(self) -> None:
        for sub in self._command_subs:
            try:
                await sub.drain()  # type: ignore[no-untyped-call]  # nats-py leaves it untyped
            except Exception as e:
                logger.warning("could not drain a subscription", error=repr(e))
        self._command_subs.clear()

    async def stop(self) -> None:
        """Stop intake, finish every queued command, write snapshots, release leases, leave. Idempotent."""
        if self._state in ("stopping", "stopped"):
            await self._stopped.wait()
            return
        if self._state == "new":
            self._state = "stopped"
            self._stopped.set()
            return
        self._state = "stopping"
        try:
            await self._stop_intake()
            for actor in list(self._actors.values()):
                actor.post(STOP)
            tasks = list(self._actor_tasks.values())
            if tasks:
                _, pending = await asyncio.wait(tasks, timeout=self.config.shutdown_timeout)
                for task in pending:
                    task.cancel()
            await self._wait_settled()
            for sub in self._inbox_subs:
                await sub.unsubscribe()
            self._inbox_subs.clear()
            if self._micro is not None:
                await self._micro.stop()
            if self._metrics_server is not None:
                self._metrics_server.shutdown()
                self._metrics_server.server_close()
            for task in self._background:
                task.cancel()
            for placement in self._placements.values():
                await placement.deregister()
            if hasattr(self, "command_log"):
                await self.command_log.flush(5.0)
                await self.store.close()
                await self.snapshots.close()
                await self.refusals.close()
        finally:
            if self._tasks is not None:
                try:
                    await self._tasks.__aexit__(None, None, None)
                except BaseExceptionGroup as group:
                    logger.error("background tasks failed", errors=[repr(e) for e in group.exceptions])
            if isinstance(self._connect, ConnectOptions) and self._nc is not None and not self._nc.is_closed:
                await self._nc.close()
            self._state = "stopped"
            self._stopped.set()
            logger.info("node stopped", node=self.node_id, commands=dict(self.counts))

    async def _wait_settled(self) -> None:
        """Let the tasks that settle stopped actors (lease releases, forwards) finish."""
        for _ in range(100):  # settling may stop more actors (forwards re-route): repeat until none is left
            if not self._settle_tasks:
                return
            await asyncio.wait(list(self._settle_tasks), timeout=self.config.shutdown_timeout)

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

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

    @property
    def live_actors(self) -> int:
        """How many aggregates are live on this node."""
        return len(self._actors)

    def _leases(self, namespace: str) -> dict[str, _Lease]:
        """The leases this node holds in a namespace, by key."""
        held = self._held.get(namespace)
        if held is None:
            held = self._held[namespace] = {}
        return held

    def is_live(self, address: Address) -> bool:
        return address in self._actors

    def queued(self, address: Address) -> int:
        """How many requests wait in the mailbox of the aggregate's live actor (0 if it is not live here)."""
        actor = self._actors.get(address)
        return len(actor.mailbox) if actor is not None else 0

    def placement(self, namespace: str) -> Placement:
        """This node's view of membership and leases in a namespace."""
        return self._placements[namespace]

    def lease_key(self, address: Address) -> str:
        codec = self._hosted[(address.namespace, address.context)].context.codec(address.aggregate_type)
        return f"{address.context}.{codec.aggregate.placement_key(address.aggregate_id)}"

    # -- intake ----------------------------------------------------------------------------

    async def _on_command(self, msg: Msg) -> None:
        tokens = msg.subject.split(".", 3)
        self.metrics.received(tokens[1], tokens[2])
        await self._take(msg.subject, msg.data, msg.headers or {}, msg.reply or None, hops=0)

    async def _take(
        self, subject: str, payload: bytes, headers: dict[str, str], reply_to: str | None, hops: int
    ) -> None:
        try:
            envelope, address, codec = self._parse(subject, payload, headers, reply_to, hops)
        except _BadRequest as bad:
            await self._refuse(subject, headers, reply_to, bad)
            return
        await self._route(address, codec, envelope)

    def _parse(
        self, subject: str, payload: bytes, headers: dict[str, str], reply_to: str | None, hops: int
    ) -> tuple[Envelope, Address, AggregateCodec]:
        tokens = subject.split(".")
        hosted = self._hosted.get((tokens[1], tokens[2])) if len(tokens) > 2 else None
        command_id = headers.get(wire.H_COMMAND_ID) or uuid.uuid4().hex
        type_name = tokens[4] if len(tokens) > 4 else None

        def bad(reason: str, address: Address | None = None) -> _BadRequest:
            return _BadRequest(reason, command_id=command_id, type_name=type_name, address=address)

        if hosted is None or len(tokens) < 4 or tokens[3] != "cmd":
            raise bad(f"{subject} is not a command subject this node serves")
        if len(command_id) > MAX_COMMAND_ID_LEN or not command_id.isprintable():
            command_id = uuid.uuid4().hex
            raise bad(f"{wire.H_COMMAND_ID} must be printable and at most {MAX_COMMAND_ID_LEN} characters")
        if len(tokens) < 6:
            raise bad("send commands to radix.{namespace}.{context}.cmd.{AggregateType}.{id}")
        route = self._routes.get(subject)
        if route is None:
            try:
                codec = hosted.context.codec(tokens[4])
                # The hosted context's own strings, not fresh copies from the subject: one less copy
                # of each per live aggregate.
                address = Address(hosted.namespace, hosted.context.name, codec.type_name, ".".join(tokens[5:]))
                route = (address, codec)
            except InvalidNameError as e:
                raise bad(str(e)) from None
            if len(self._routes) >= ROUTES_KEPT:
                self._routes.clear()  # a cache of validated subjects; rebuilt as commands come
            self._routes[subject] = route
        address, codec = route
        expected: int | None = None
        if (raw := headers.get(wire.H_EXPECTED_VERSION)) is not None:
            if not raw.isdigit():
                raise bad(f"{wire.H_EXPECTED_VERSION} must be a whole number of 0 or more, not {raw!r}", address)
            expected = int(raw)
        if len(payload) > self.config.max_command_bytes:
            raise bad(
                f"the command is {len(payload)} bytes; this node accepts at most {self.config.max_command_bytes}",
                address,
            )
        try:
            command = codec.decode_command(payload)
        except DecodeError as e:
            raise bad(str(e), address) from None
        if wire.H_COMMAND_ID not in headers:
            headers = {**headers, wire.H_COMMAND_ID: command_id}  # a forward keeps the id given here
        envelope = Envelope(
            command=command,
            type_name=type(command).__name__,
            command_id=command_id,
            expected_version=expected,
            issuer=headers.get(wire.H_ISSUER),
            correlation_id=headers.get(wire.H_CORRELATION_ID),
            reply_to=reply_to,
            subject=subject,
            payload=payload,
            headers=headers,
            hops=hops,
            received=time.monotonic(),
        )
        return envelope, address, codec

    async def _refuse(self, subject: str, headers: dict[str, str], reply_to: str | None, bad: _BadRequest) -> None:
        reply = wire.Reply(status=wire.ERROR, command_id=bad.command_id, reason=bad.reason)
        logger.info("bad command", subject=subject, reason=bad.reason)
        await self._send_reply(reply_to, reply)
        tokens = subject.split(".")
        if len(tokens) > 2 and (tokens[1], tokens[2]) in self._hosted:
            self.metrics.answered(tokens[1], tokens[2], wire.ERROR, None, bad.reason)
        if bad.address is not None:
            log_to = log_subject(bad.address)
        elif len(tokens) > 2 and (tokens[1], tokens[2]) in self._hosted:
            log_to = invalid_log_subject(tokens[1], tokens[2])
        else:
            return
        self._log(
            log_to,
            reply,
            type_name=bad.type_name,
            issuer=headers.get(wire.H_ISSUER),
            correlation_id=headers.get(wire.H_CORRELATION_ID),
            expected_version=None,
            aggregate=subject,
            duplicate=False,
        )

    # -- routing ---------------------------------------------------------------------------

    async def _route(self, address: Address, codec: AggregateCodec, envelope: Envelope) -> None:
        """Deliver locally, activate (claiming the lease), or forward to the owner."""
        actor = self._actors.pop(address, None)
        if actor is not None:
            self._actors[address] = actor  # re-inserted: the dict's order is least recently used first
            self._enqueue(actor, envelope)
            return
        placement = self._placements[address.namespace]
        key = self.lease_key(address)
        owner = placement.owner(key)
        if owner is not None and not placement.is_me(owner) and placement.is_live(owner):
            if envelope.hops > 0:
                # Forwarded here, yet the cache says another node owns it: the cache may be
                # stale, so read the lease before forwarding again (no forwarding loops).
                try:
                    owner = await placement.read(key)
                except StoreUnavailableError as e:
                    await self._fail(envelope, address, f"ownership of {address} could not be read: {e}; retry")
                    return
            if owner is not None and not placement.is_me(owner) and placement.is_live(owner):
                self._spawn_forward(address, envelope, owner.node)
                return
        if self._state != "running":
            target = self._target_for(address)
            if target is None:
                await self._fail(envelope, address, "this node is shutting down and no other node is live; retry")
            else:
                self._spawn_forward(address, envelope, target.node)
            return
        actor = self._activate(address, codec)
        self._actors[address] = actor
        self._enqueue(actor, envelope)

    def _enqueue(self, actor: AggregateActor, envelope: Envelope) -> None:
        try:
            actor.post(envelope)
        except asyncio.QueueFull:
            self.spawn(
                self._fail(
                    envelope,
                    actor.address,
                    f"{actor.address} has {self.config.mailbox_size} commands queued; retry later",
                )
            )

    async def _fail(self, envelope: Envelope, address: Address, reason: str) -> None:
        bad = _BadRequest(reason, command_id=envelope.command_id, type_name=envelope.type_name, address=address)
        await self._refuse(envelope.subject, envelope.headers, envelope.reply_to, bad)

    def _activate(self, address: Address, codec: AggregateCodec) -> AggregateActor:
        hosted = self._hosted[(address.namespace, address.context)]
        actor = AggregateActor(self, address, codec, self._settings, hosted.fingerprints[codec.type_name])
        if len(self._actors) >= self.config.max_actors:
            self._passivate_least_recently_used()
        return actor

    def _passivate_least_recently_used(self) -> None:
        excess = len(self._actors) + 1 - self.config.max_actors
        for actor in list(self._actors.values()):
            if excess <= 0:
                break
            if not actor.busy and actor.mailbox.empty():
                actor.post(STOP)
                del self._actors[actor.address]  # new commands for it activate a fresh actor
                excess -= 1

    def _spawn_forward(self, address: Address, envelope: Envelope, node: str) -> None:
        self.spawn(self._forward(address, envelope, node))

    async def _forward(self, address: Address, envelope: Envelope, node: str) -> None:
        """Hand a command to the node that owns its aggregate; re-resolve and retry if that node is gone."""
        placement = self._placements[address.namespace]
        key = self.lease_key(address)
        hops = envelope.hops + 1
        if hops > self.config.max_hops:
            await self._fail(envelope, address, f"ownership of {address} is moving; retry")
            return
        headers = {
            **envelope.headers,
            wire.H_SUBJECT: envelope.subject,
            wire.H_HOPS: str(hops),
            wire.H_REPLY_TO: envelope.reply_to or "",
        }
        deadline = time.monotonic() + self.config.liveness_ttl + 2 * self.config.forward_timeout
        delay = 0.02
        while True:
            try:
                await Inbox.of(self.nc).request(
                    f"{node_inbox(address.namespace, node)}.fwd",
                    envelope.payload,
                    headers=headers,
                    timeout=self.config.forward_timeout,
                )
                return
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as e:
                if time.monotonic() > deadline:
                    await self._fail(envelope, address, f"the owner of {address} ({node}) does not answer; retry")
                    return
                logger.info("forward not taken; resolving the owner again", to=node, error=type(e).__name__)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)
            try:
                owner = await placement.read(key)
                live = owner is not None and await placement.confirm_live(owner)
            except StoreUnavailableError:
                continue
            if owner is not None and live and not placement.is_me(owner):
                node = owner.node
                continue
            if self._state == "running":  # unowned, ours, or its owner is gone: take it here
                await self._route(address, self._codec(address), msgspec.structs.replace(envelope, hops=hops))
                return

    def _codec(self, address: Address) -> AggregateCodec:
        return self._hosted[(address.namespace, address.context)].context.codec(address.aggregate_type)

    async def _on_inbox(self, msg: Msg) -> None:
        namespace, kind = msg.subject.split(".")[1], msg.subject.rpartition(".")[2]
        if kind == "fwd":
            headers = dict(msg.headers or {})
            subject = headers.pop(wire.H_SUBJECT, "")
            reply_to = headers.pop(wire.H_REPLY_TO, "") or None
            hops = headers.pop(wire.H_HOPS, "1")
            await self._take(subject, msg.data, headers, reply_to, int(hops) if hops.isdigit() else 1)
            answer = _FORWARD_OK
        elif kind == "status":
            answer = _json.encode(self.status())
        elif kind == "migrate":
            # A move waits for the actor's turn in flight: answer from a task, not this callback.
            self.spawn(self._answer_migrate(namespace, msg))
            return
        elif kind == "drain":
            answer = _json.encode({"ok": True, "node": self.node_id, "state": "draining"})
            # Not in the node's task group: draining ends by stopping the node, which waits for that group.
            self._drain_task = asyncio.create_task(self.drain())
        else:
            answer = _json.encode({"ok": False, "reason": f"unknown request {kind!r}"})
        if msg.reply:
            await self.nc.publish(msg.reply, answer)

    async def _answer_migrate(self, namespace: str, msg: Msg) -> None:
        try:
            request = _migrate_decoder.decode(msg.data)
            address = Address(namespace, request.context, request.aggregate_type, request.aggregate_id)
            result = await self.migrate(address, to=request.to)
        except (msgspec.DecodeError, InvalidNameError) as e:
            result = {"ok": False, "reason": str(e)}
        if msg.reply:
            await self.nc.publish(msg.reply, _json.encode(result))

    # -- placement -------------------------------------------------------------------------

    def _target_for(self, address: Address) -> NodeRecord | None:
        """The least loaded other live node hosting the aggregate's context."""
        placement = self._placements[address.namespace]
        counts = placement.counts(address.context)
        candidates = [r for r in placement.live_nodes(address.context) if r.node != self.node_id]
        if not candidates:
            return None
        return min(candidates, key=lambda r: (counts.get(r.node, 0), r.node))

    async def migrate(self, address: Address, *, to: str | None = None) -> dict[str, Any]:
        """Move a live aggregate of this node to another node (`to`, or the least loaded)."""
        placement = self._placements[address.namespace]
        actor = self._actors.get(address)
        if actor is None:
            return {"ok": False, "reason": f"{address} is not live on {self.node_id}"}
        if to is None:
            target = self._target_for(address)
        else:
            target = next((r for r in placement.live_nodes(address.context) if r.node == to), None)
        if target is None or target.node == self.node_id:
            return {"ok": False, "reason": f"no live node {to or '(other)'} hosts {address.context}"}
        lease = self._leases(address.namespace).get(self.lease_key(address))
        if lease is not None and len(lease.actors) > 1:
            return {"ok": False, "reason": f"{address} shares its placement key with other live aggregates"}
        actor.post(Move(target.node, target.incarnation, time.monotonic()))
        task = self._actor_tasks.get(actor)
        if task is not None:
            await asyncio.wait([task], timeout=self.config.shutdown_timeout)
        return {"ok": actor.ended == "moved", "to": actor.hand_to, "ended": actor.ended}

    async def _heartbeat(self) -> None:
        interval = self.config.liveness_ttl / 4
        while True:
            await asyncio.sleep(interval)
            for namespace in self._placements:
                await self._renew(namespace)

    async def _renew(self, namespace: str) -> bool:
        """Renew this node's liveness in a namespace; one renewal at a time, shared by all who ask."""
        pending = self._renewing.get(namespace)
        if pending is None or pending.done():
            pending = asyncio.ensure_future(self._renew_now(namespace))
            self._renewing[namespace] = pending
        return await asyncio.shield(pending)

    async def _renew_now(self, namespace: str) -> bool:
        placement = self._placements[namespace]
        if placement.lost:
            return False  # lost while stopping: nothing more to renew
        try:
            await placement.renew()
            return True
        except LivenessLost as e:
            await self._lost_liveness(namespace, placement, e)
            return False
        except StoreError as e:  # whatever the store says, the heartbeat goes on
            logger.warning("liveness not renewed; retrying", namespace=namespace, error=repr(e))
            return False

    async def _lost_liveness(self, namespace: str, placement: Placement, error: LivenessLost) -> None:
        # Others may own our aggregates now: drop every local actor of this namespace,
        # register under a new incarnation, and route what they held afresh.
        logger.error("liveness lost: stepping down from every aggregate", namespace=namespace, error=str(error))
        for actor in list(self._actors.values()):
            if actor.address.namespace == namespace:
                actor.revoked = True
                actor.post(STOP)  # wake it, so it hands on what it holds and ends
                if self._actors.get(actor.address) is actor:
                    del self._actors[actor.address]
                self._leases(namespace).pop(self.lease_key(actor.address), None)
        if self._state not in ("running", "draining"):
            placement.lost = True  # stopping anyway: do not come back
            return
        while self._state in ("running", "draining"):
            try:
                await placement.reregister()
                return
            except (StoreError, KeyChanged) as e:
                logger.warning("could not register again; retrying", error=repr(e))
                await asyncio.sleep(placement.ttl / 4)

    async def _passivate_idle(self) -> None:
        """Ask parked actors idle for `idle_timeout` to passivate, least recently used first.

        `_actors` is ordered by last use, so each sweep looks only at the actors it passivates
        and one more: no timer per actor.
        """
        timeout = self.config.idle_timeout
        while True:
            await asyncio.sleep(min(max(timeout / 4, 0.05), 10.0))
            horizon = time.monotonic() - timeout
            for actor in self._actors.values():
                if actor.last_active > horizon:
                    break
                if not actor.running:
                    actor.post(PASSIVATE)

    async def _rebalance(self) -> None:
        """Push live aggregates to less loaded nodes when this node holds more than its share."""
        while True:
            await asyncio.sleep(self.config.rebalance_interval)
            if self._state != "running" or self.config.rebalance_batch == 0:
                continue
            for namespace, context in self._hosted:
                placement = self._placements[namespace]
                counts = placement.counts(context)
                if len(counts) < 2:
                    continue
                mine = counts.get(self.node_id, 0)
                share = sum(counts.values()) / len(counts)
                excess = int(mine - max(share * (1 + self.config.rebalance_threshold), share + 1))
                if excess <= 0:
                    continue
                movable = [
                    a
                    for a in self._actors.values()
                    if a.address.namespace == namespace
                    and a.address.context == context
                    and not a.busy
                    and a.mailbox.empty()
                    and not a.moving
                ][: min(excess, self.config.rebalance_batch)]
                logger.info("rebalancing", context=context, moving=len(movable), mine=mine, share=round(share, 1))
                for actor in movable:
                    target = self._target_for(actor.address)
                    if target is None:
                        break
                    counts[target.node] = counts.get(target.node, 0) + 1
                    actor.moving = True
                    actor.post(Move(target.node, target.incarnation, time.monotonic()))

    # -- the ActorHost protocol ------------------------------------------------------------

    async def acquire(self, actor: AggregateActor) -> Claim:
        namespace, key = actor.address.namespace, self.lease_key(actor.address)
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
                raise StoreUnavailableError(f"{self.node_id} is not confirmed live in {namespace}; retry")
            claim = await self._placements[namespace].acquire(key)
            lease = self._leases(namespace).setdefault(key, _Lease(claim.epoch, claim.taken_over))
        if actor not in lease.actors:
            lease.actors += (actor,)
        return Claim(lease.epoch, lease.taken_over)

    async def still_owner(self, actor: AggregateActor) -> str | None:
        placement = self._placements[actor.address.namespace]
        # From the leader: a lagging replica may still show our lease after it was taken over,
        # and an actor that believed it would reload and write under its old epoch.
        owner = await placement.read(self.lease_key(actor.address), leader=True)
        if owner is not None and placement.is_me(owner) and owner.revision == actor.epoch:
            return None
        return owner.node if owner is not None else ""

    async def ensure_liveness(self, actor: AggregateActor) -> bool:
        # Before answering from local state, which may be stale if others took over.
        return await self._confirmed_live(actor.address.namespace) and not actor.revoked

    async def _confirmed_live(self, namespace: str) -> bool:
        """Whether this node's liveness is fresh, renewing it first if the last renewal is old
        (a pause, a slow loop, an outage)."""
        placement = self._placements[namespace]
        if not placement.liveness_fresh():
            await self._renew(namespace)
        return placement.liveness_fresh()

    async def hand_over(self, actor: AggregateActor, move: Move) -> bool:
        namespace, key = actor.address.namespace, self.lease_key(actor.address)
        record = NodeRecord(move.node, move.incarnation, [actor.address.context], "")
        try:
            await self._placements[namespace].transfer(key, actor.epoch, record)
        except KeyChanged:
            return False
        self._leases(namespace).pop(key, None)
        return True

    async def answer(self, actor: AggregateActor, envelope: Envelope, reply: wire.Reply, duplicate: bool) -> None:
        await self._send_reply(envelope.reply_to, reply)
        self.metrics.answered(
            actor.address.namespace,
            actor.address.context,
            reply.status,
            time.monotonic() - envelope.received,
            reply.reason,
        )
        self._log(
            log_subject(actor.address),
            reply,
            type_name=envelope.type_name,
            issuer=envelope.issuer,
            correlation_id=envelope.correlation_id,
            expected_version=envelope.expected_version,
            aggregate=command_subject(actor.address),
            duplicate=duplicate,
        )

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        assert self._tasks is not None
        self._tasks.create_task(_logged(coroutine))

    def wake(self, actor: AggregateActor) -> None:
        assert self._tasks is not None
        # Logged, never propagated: a failing actor ends (and settles), the node goes on.
        self._actor_tasks[actor] = self._tasks.create_task(_logged(actor.run()))

    def actor_parked(self, actor: AggregateActor) -> None:
        self._actor_tasks.pop(actor, None)

    def actor_stopped(self, actor: AggregateActor) -> None:
        if self._actors.get(actor.address) is actor:
            del self._actors[actor.address]
        self._actor_tasks.pop(actor, None)
        assert self._tasks is not None
        task = self._tasks.create_task(_logged(self._settle(actor)))
        self._settle_tasks.add(task)
        task.add_done_callback(self._settle_tasks.discard)

    async def _settle(self, actor: AggregateActor) -> None:
        """Release the lease of an actor that ended, or hand on what it had queued."""
        leftovers = actor.take_leftovers()
        namespace, key = actor.address.namespace, self.lease_key(actor.address)
        lease = self._leases(namespace).get(key)
        if lease is not None and actor in lease.actors:
            lease.actors = tuple(a for a in lease.actors if a is not actor)
        if actor.ended in ("idle", "stopped", "failed") and lease is not None and not lease.actors:
            lease.releasing = asyncio.get_running_loop().create_future()
            try:
                async with self.pace:
                    await self._placements[namespace].release(key, lease.epoch)
            except StoreUnavailableError as e:
                logger.warning("lease not released; it passes on when this node's liveness expires", error=repr(e))
            finally:
                if self._leases(namespace).get(key) is lease:
                    del self._leases(namespace)[key]
                lease.releasing.set_result(None)
        elif actor.ended in ("lost", "elsewhere", "revoked"):
            self._leases(namespace).pop(key, None)
        codec = actor.codec
        for envelope in leftovers:
            if actor.hand_to:
                self._spawn_forward(actor.address, envelope, actor.hand_to)
            else:
                await self._route(actor.address, codec, envelope)

    # -- replies, status and the log -------------------------------------------------------

    async def _send_reply(self, reply_to: str | None, reply: wire.Reply) -> None:
        self.counts[reply.status] += 1
        if reply_to:
            try:
                headers = self._reply_headers[reply.status]
                await publish(self.nc, reply_to, wire.reply_encoder.encode(reply), headers=headers)
            except Exception as e:
                logger.warning("reply not sent", error=repr(e))

    def _log(
        self,
        subject: str,
        reply: wire.Reply,
        *,
        type_name: str | None,
        issuer: str | None,
        correlation_id: str | None,
        expected_version: int | None,
        aggregate: str,
        duplicate: bool,
    ) -> None:
        entry = wire.LogEntry(
            command_id=reply.command_id,
            type=type_name,
            status=reply.status,
            reason=reply.reason,
            issuer=issuer,
            correlation_id=correlation_id,
            expected_version=expected_version,
            version=reply.version,
            node=self.node_id,
            at=wire.timestamp(),
            aggregate=aggregate,
            duplicate=duplicate,
        )
        self.command_log.record(subject, entry)

    def _endpoint_info(self) -> list[EndpointInfo]:
        return [
            EndpointInfo(
                name=f"{ns}-{ctx}",
                subject=context_filter(ns, ctx, "cmd"),
                queue_group=f"radix.{ns}.{ctx}",
                metadata={"namespace": ns, "context": ctx},
            )
            for ns, ctx in sorted(self._hosted)
        ]

    def _endpoint_stats(self) -> list[EndpointStats]:
        stats = []
        for ns, ctx in sorted(self._hosted):
            scope = self.metrics.scope(ns, ctx)
            answered = sum(scope.statuses.values())
            nanoseconds = int(scope.seconds * 1e9)
            stats.append(
                EndpointStats(
                    name=f"{ns}-{ctx}",
                    subject=context_filter(ns, ctx, "cmd"),
                    queue_group=f"radix.{ns}.{ctx}",
                    num_requests=scope.received,
                    num_errors=scope.statuses[wire.ERROR],
                    last_error=scope.last_error,
                    processing_time=nanoseconds,
                    average_processing_time=nanoseconds // answered if answered else 0,
                    data=dict(scope.statuses),
                )
            )
        return stats

    def _gauges(self) -> dict[str, float]:
        return {
            "live_actors": len(self._actors),
            "activations_total": self.stats.activations,
            "passivations_total": self.stats.passivations,
            "migrations_total": self.stats.migrations,
            "fenced_appends_total": self.stats.fenced,
            "snapshots_written_total": self.stats.snapshots_written,
        }

    def _serve_metrics(self, host: str, port: int) -> None:
        registry = CollectorRegistry()
        registry.register(PrometheusCollector(self.metrics, self.node_id, self._gauges))
        self._metrics_server, _ = start_http_server(port, addr=host, registry=registry)
        logger.info("metrics served", url=f"http://{host}:{self._metrics_server.server_port}/metrics")

    @property
    def metrics_url(self) -> str | None:
        """Where Prometheus metrics are served, if they are."""
        if self._metrics_server is None:
            return None
        return f"http://{self.config.metrics_host}:{self._metrics_server.server_port}/metrics"

    def status(self) -> _Status:
        """What this node is doing: its incarnations, live aggregates per context, command counts."""
        per_context: Counter[str] = Counter(f"{a.namespace}/{a.context}" for a in self._actors)
        return _Status(
            node=self.node_id,
            incarnation={ns: p.incarnation for ns, p in self._placements.items()},
            state=self._state,
            hosts=sorted(f"{ns}/{ctx}" for ns, ctx in self._hosted),
            live_actors=len(self._actors),
            actors=dict(per_context),
            commands=dict(self.counts),
            activations=self.stats.activations,
            passivations=self.stats.passivations,
            migrations=self.stats.migrations,
            fenced=self.stats.fenced,
            rate=round(self.metrics.rate(), 1),
        )


MIN_SERVER: Final = (2, 12)


async def _check_server(nc: NATS, wait: float = 30.0) -> None:
    """Refuse to start on a server that lacks what Radix relies on, saying what to do.

    A JetStream cluster that is still electing its meta leader answers "temporarily
    unavailable": wait for it, up to `wait` seconds.
    """
    version = nc.connected_server_version
    if (version.major, version.minor) < MIN_SERVER:
        raise RadixError(
            f"nats-server {version} is too old: Radix needs {MIN_SERVER[0]}.{MIN_SERVER[1]} or newer "
            "(per-key TTLs for liveness, atomic batch publish); upgrade the servers"
        )
    # The server says in its INFO whether it runs JetStream (nats-py keeps it private).
    if not nc._server_info.get("jetstream", False):
        raise RadixError("JetStream is not available on this NATS: enable it on the servers (-js)")
    deadline = time.monotonic() + wait
    while True:
        try:
            await nc.jetstream().account_info()
            return
        except (js_errors.ServiceUnavailableError, nats.errors.TimeoutError) as e:
            if time.monotonic() > deadline:
                raise RadixError(f"JetStream did not become available within {wait}s ({e!r})") from None
            await asyncio.sleep(0.25)
        except Exception as e:
            raise RadixError(f"JetStream is not usable on this NATS ({e!r}): check the account's limits") from None


def _version() -> str:
    try:
        return importlib.metadata.version("radix")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"


def _ms(ordered: Sequence[float], quantile: float) -> float | None:
    """A quantile of sorted durations in seconds, in milliseconds."""
    if not ordered:
        return None
    return round(1000 * ordered[min(len(ordered) - 1, round(quantile * (len(ordered) - 1)))], 2)


async def _logged(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run a background coroutine; log (never propagate) what it raises, so one failure cannot stop the node."""
    try:
        await coroutine
    except asyncio.CancelledError:
        raise
    except Exception:
        logger.exception("background task failed")
