"""The node: one process's share of the runtime.

A node connects to NATS, hosts bounded contexts in namespaces, and serves commands
sent to `radix.{ns}.{ctx}.cmd.{Type}.{id}` in one queue group per (namespace,
context), so every node of a context shares the work. Each live aggregate is an
actor with a mailbox; the subscription callback only parses, validates and queues,
so one slow aggregate never holds up the others.

    async with Node({"prod": [inventory]}, nats=ConnectOptions(servers=[url])) as node:
        await node.wait_stopped()      # or: await Node(...).run()
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections import Counter
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from radix import wire
from radix.connection import ConnectOptions, connect
from radix.domain import AggregateCodec, BoundedContext
from radix.errors import DecodeError, InvalidNameError, RadixError
from radix.logs import logger
from radix.names import (
    Address,
    command_subject,
    context_filter,
    invalid_log_subject,
    log_subject,
    validate_namespace,
    validate_node_id,
)
from radix.runtime._actor import STOP, ActorSettings, AggregateActor, Envelope, Stats, state_fingerprint
from radix.runtime._commandlog import CommandLog, now
from radix.store import JetStreamEventStore, StoreConfig
from radix.store.snapshots import KVSnapshotStore

__all__ = ["Node", "NodeConfig"]

MAX_COMMAND_ID_LEN = 128


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
    max_command_bytes: int = 256 * 1024
    command_log_max_age: float = 7 * 24 * 3600.0
    shutdown_timeout: float = 30.0
    store: StoreConfig = field(default_factory=StoreConfig)

    def __post_init__(self) -> None:
        validate_node_id(self.node_id)
        if self.idle_timeout <= 0 or self.shutdown_timeout <= 0 or self.command_log_max_age <= 0:
            raise ValueError("idle_timeout, shutdown_timeout and command_log_max_age must be positive")
        if min(self.max_actors, self.mailbox_size, self.recent_commands, self.recent_events) < 1:
            raise ValueError("max_actors, mailbox_size, recent_commands and recent_events must be at least 1")
        if self.snapshot_every < 0 or self.retries < 0 or self.max_command_bytes < 1:
            raise ValueError("snapshot_every and retries must be 0 or more, max_command_bytes positive")

    def actor_settings(self) -> ActorSettings:
        return ActorSettings(
            idle_timeout=self.idle_timeout,
            snapshot_every=self.snapshot_every,
            retries=self.retries,
            mailbox_size=self.mailbox_size,
            recent_commands=self.recent_commands,
            recent_events=self.recent_events,
        )


@dataclass(frozen=True)
class _Hosted:
    namespace: str
    context: BoundedContext
    fingerprints: dict[str, str | None]


class _BadRequest(Exception):
    def __init__(self, reason: str, *, command_id: str, type_name: str | None, address: Address | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.command_id = command_id
        self.type_name = type_name
        self.address = address


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
        self._settings = self.config.actor_settings()
        self._actors: dict[Address, AggregateActor] = {}
        self._actor_tasks: dict[AggregateActor, asyncio.Task[None]] = {}
        self._subs: list[Subscription] = []
        self._tasks: asyncio.TaskGroup | None = None
        self._state = "new"
        self._stopped = asyncio.Event()
        self.counts: Counter[str] = Counter()
        self.stats = Stats()

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def nc(self) -> NATS:
        if self._nc is None:
            raise RadixError("the node is not started")
        return self._nc

    async def start(self) -> Self:
        """Connect, create streams, and start serving commands."""
        if self._state != "new":
            return self
        self._state = "starting"
        if self._nc is None:
            assert isinstance(self._connect, ConnectOptions)
            self._nc = await connect(self._connect, name=f"radix {self.node_id}")
        nc = self._nc
        self.store = JetStreamEventStore(nc, config=self.config.store)
        self.snapshots = KVSnapshotStore(nc, replicas=self.config.store.replicas, timeout=self.config.store.timeout)
        self.command_log = CommandLog(nc, max_age=self.config.command_log_max_age, replicas=self.config.store.replicas)
        self._tasks = asyncio.TaskGroup()
        await self._tasks.__aenter__()
        await self.command_log.start()
        for (namespace, context), hosted in self._hosted.items():
            await self.store.ensure_stream(namespace, context)
            await self.command_log.ensure_stream(namespace, context)
            for codec in hosted.context.codecs.values():
                if hosted.fingerprints[codec.type_name] is not None and self.config.snapshot_every > 0:
                    await self.snapshots.bucket(namespace)
            self._subs.append(
                await nc.subscribe(
                    context_filter(namespace, context, "cmd"),
                    queue=f"radix.{namespace}.{context}",
                    cb=self._on_command,
                )
            )
        self._state = "running"
        logger.info(
            "node started",
            node=self.node_id,
            hosts=sorted(f"{ns}/{ctx}" for ns, ctx in self._hosted),
        )
        return self

    async def stop(self) -> None:
        """Stop intake, finish every queued command, write snapshots, flush the command log. Idempotent."""
        if self._state in ("stopping", "stopped"):
            await self._stopped.wait()
            return
        if self._state == "new":
            self._state = "stopped"
            self._stopped.set()
            return
        self._state = "stopping"
        try:
            for sub in self._subs:
                try:
                    await sub.drain()  # type: ignore[no-untyped-call]  # nats-py leaves it untyped; handles what was already delivered, then unsubscribes
                except Exception as e:
                    logger.warning("could not drain a subscription", error=repr(e))
            self._subs.clear()
            for actor in list(self._actors.values()):
                await actor.mailbox.put(STOP)
            tasks = list(self._actor_tasks.values())
            if tasks:
                _, pending = await asyncio.wait(tasks, timeout=self.config.shutdown_timeout)
                for task in pending:
                    task.cancel()
            await self.command_log.flush(5.0)
            await self.command_log.close()
            await self.store.close()
            await self.snapshots.close()
        finally:
            if self._tasks is not None:
                await self._tasks.__aexit__(None, None, None)
            if isinstance(self._connect, ConnectOptions) and self._nc is not None and not self._nc.is_closed:
                await self._nc.close()
            self._state = "stopped"
            self._stopped.set()
            logger.info("node stopped", node=self.node_id, commands=dict(self.counts))

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
        """Start, serve until cancelled, then stop gracefully."""
        await self.start()
        try:
            await self.wait_stopped()
        finally:
            await asyncio.shield(self.stop())

    @property
    def live_actors(self) -> int:
        """How many aggregates are live on this node."""
        return len(self._actors)

    def is_live(self, address: Address) -> bool:
        return address in self._actors

    # -- intake ----------------------------------------------------------------------------

    async def _on_command(self, msg: Msg) -> None:
        try:
            envelope, address, codec = self._parse(msg)
        except _BadRequest as bad:
            await self._refuse(msg, bad)
            return
        await self._deliver(address, codec, envelope, msg)

    def _parse(self, msg: Msg) -> tuple[Envelope, Address, AggregateCodec]:
        tokens = msg.subject.split(".")
        hosted = self._hosted[(tokens[1], tokens[2])]
        headers = msg.headers or {}
        command_id = headers.get(wire.H_COMMAND_ID) or uuid.uuid4().hex
        type_name = tokens[4] if len(tokens) > 4 else None

        def bad(reason: str, address: Address | None = None) -> _BadRequest:
            return _BadRequest(reason, command_id=command_id, type_name=type_name, address=address)

        if len(command_id) > MAX_COMMAND_ID_LEN or not command_id.isprintable():
            command_id = uuid.uuid4().hex
            raise bad(f"{wire.H_COMMAND_ID} must be printable and at most {MAX_COMMAND_ID_LEN} characters")
        if len(tokens) < 6:
            raise bad("send commands to radix.{namespace}.{context}.cmd.{AggregateType}.{id}")
        try:
            address = Address(tokens[1], tokens[2], tokens[4], ".".join(tokens[5:]))
            codec = hosted.context.codec(address.aggregate_type)
        except InvalidNameError as e:
            raise bad(str(e)) from None
        expected: int | None = None
        if (raw := headers.get(wire.H_EXPECTED_VERSION)) is not None:
            if not raw.isdigit():
                raise bad(f"{wire.H_EXPECTED_VERSION} must be a whole number of 0 or more, not {raw!r}", address)
            expected = int(raw)
        if len(msg.data) > self.config.max_command_bytes:
            raise bad(
                f"the command is {len(msg.data)} bytes; this node accepts at most {self.config.max_command_bytes}",
                address,
            )
        try:
            command = codec.decode_command(msg.data)
        except DecodeError as e:
            raise bad(str(e), address) from None
        envelope = Envelope(
            command=command,
            type_name=type(command).__name__,
            command_id=command_id,
            expected_version=expected,
            issuer=headers.get(wire.H_ISSUER),
            correlation_id=headers.get(wire.H_CORRELATION_ID),
            reply_to=msg.reply,
        )
        return envelope, address, codec

    async def _refuse(self, msg: Msg, bad: _BadRequest) -> None:
        reply = wire.Reply(status=wire.ERROR, command_id=bad.command_id, reason=bad.reason)
        headers = msg.headers or {}
        logger.info("bad command", subject=msg.subject, reason=bad.reason)
        await self._send_reply(msg.reply, reply)
        ns, ctx = msg.subject.split(".")[1:3]
        subject = log_subject(bad.address) if bad.address else invalid_log_subject(ns, ctx)
        await self._log(
            subject,
            reply,
            type_name=bad.type_name,
            issuer=headers.get(wire.H_ISSUER),
            correlation_id=headers.get(wire.H_CORRELATION_ID),
            expected_version=None,
            aggregate=msg.subject,
            duplicate=False,
        )

    async def _deliver(self, address: Address, codec: AggregateCodec, envelope: Envelope, msg: Msg) -> None:
        actor = self._actors.pop(address, None)
        if actor is None:
            if self._state != "running":
                await self._refuse(
                    msg,
                    _BadRequest(
                        "this node is shutting down; retry",
                        command_id=envelope.command_id,
                        type_name=envelope.type_name,
                        address=address,
                    ),
                )
                return
            actor = self._activate(address, codec)
        self._actors[address] = actor  # re-inserted: the dict's order is least recently used first
        try:
            actor.mailbox.put_nowait(envelope)
        except asyncio.QueueFull:
            await self._refuse(
                msg,
                _BadRequest(
                    f"{address} has {self.config.mailbox_size} commands queued; retry later",
                    command_id=envelope.command_id,
                    type_name=envelope.type_name,
                    address=address,
                ),
            )

    def _activate(self, address: Address, codec: AggregateCodec) -> AggregateActor:
        hosted = self._hosted[(address.namespace, address.context)]
        actor = AggregateActor(self, address, codec, self._settings, hosted.fingerprints[codec.type_name])
        assert self._tasks is not None
        self._actor_tasks[actor] = self._tasks.create_task(actor.run())
        if len(self._actors) >= self.config.max_actors:
            self._passivate_least_recently_used()
        return actor

    def _passivate_least_recently_used(self) -> None:
        excess = len(self._actors) + 1 - self.config.max_actors
        for actor in list(self._actors.values()):
            if excess <= 0:
                break
            if not actor.busy and actor.mailbox.empty():
                actor.mailbox.put_nowait(STOP)
                del self._actors[actor.address]  # new commands for it activate a fresh actor
                excess -= 1

    # -- the ActorHost protocol ------------------------------------------------------------

    async def answer(self, actor: AggregateActor, envelope: Envelope, reply: wire.Reply, duplicate: bool) -> None:
        await self._send_reply(envelope.reply_to, reply)
        await self._log(
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
        self._tasks.create_task(coroutine)

    def actor_stopped(self, actor: AggregateActor) -> None:
        if self._actors.get(actor.address) is actor:
            del self._actors[actor.address]
        self._actor_tasks.pop(actor, None)

    # -- replies and the log ---------------------------------------------------------------

    async def _send_reply(self, reply_to: str | None, reply: wire.Reply) -> None:
        self.counts[reply.status] += 1
        if reply_to:
            try:
                await self.nc.publish(reply_to, wire.reply_encoder.encode(reply), headers={wire.H_STATUS: reply.status})
            except Exception as e:
                logger.warning("reply not sent", error=repr(e))

    async def _log(
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
            at=now(),
            aggregate=aggregate,
            duplicate=duplicate,
        )
        await self.command_log.record(subject, entry)
