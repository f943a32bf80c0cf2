"""An in-memory runtime: bounded contexts run through Radix's real actors and command algorithm, on the
in-memory twins of every port (events, snapshots, refusals, leases). No NATS, no server: for fast tests
of your own contexts, with what a node does between a command and its reply (idempotent command ids,
the true-conflict check, group commit, snapshots, rehydration after passivation).

    async with InMemoryRuntime([inventory]) as runtime:
        await runtime.send(CreateItem(name="widget"), aggregate_id="sku-1")
        result = await runtime.send(CheckIn(count=3), aggregate_id="sku-1")
        assert result.version == 2

What it leaves out is what needs more than one process: forwarding, failover, fencing by
another writer. Those are tested on real servers (docs/testing.md).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence
from typing import Any, Self, Unpack

from radix import wire
from radix.client import Accepted, AggregateState, SendOptions, command_headers, outcome, state_of
from radix.domain import BoundedContext, Command, Event, encode_command
from radix.errors import CommandTimeoutError, RadixError, ReadTimeoutError
from radix.runtime.actor import AggregateActor
from radix.runtime.actors import Actors
from radix.runtime.answers import entry_of
from radix.runtime.config import ActorConfig
from radix.runtime.hosting import Hosting
from radix.runtime.leases import NodeLeases
from radix.runtime.lifecycle import Service
from radix.runtime.mailbox import READ, Envelope, MailboxFullError
from radix.runtime.ports import ActorSettings, Stats
from radix.store.commit import DEFAULT_MAX_PAYLOAD
from radix.store.memory import (
    InMemoryEventStore,
    InMemoryLeaseTable,
    InMemoryPlacement,
    InMemoryRefusalStore,
    InMemorySchemaRegistry,
    InMemorySnapshotStore,
)
from radix.store.schemas import register
from radix.wire.names import Address, command_subject, query_subject

__all__ = ["InMemoryRuntime"]


class InMemoryRuntime(Service):
    """One namespace of bounded contexts served in this process, by the actors a node would run."""

    def __init__(
        self,
        contexts: Sequence[BoundedContext],
        *,
        namespace: str = "test",
        config: ActorConfig | None = None,
        node_id: str = "memory",
        timeout: float = 30.0,
    ) -> None:
        self.namespace = namespace
        self.node_id = node_id
        self.timeout = timeout
        """How long `send`, `reply` and `read` wait for an answer before they raise, as a client's timeout."""
        self._contexts = {c.name: c for c in contexts}
        self._hosting = Hosting({namespace: contexts})
        self._settings = ActorSettings.of(config or ActorConfig(), DEFAULT_MAX_PAYLOAD)
        self.events = InMemoryEventStore()
        self.snapshots = InMemorySnapshotStore()
        self.refusals = InMemoryRefusalStore()
        self.leases = InMemoryLeaseTable()
        self.schemas = InMemorySchemaRegistry()
        """The schema registry its contexts register in at start (a `SchemaError` from `start` if they
        disagree with it)."""
        self._placement = InMemoryPlacement(self.leases, node_id, sorted(self._contexts))
        self.stats = Stats()
        self.command_log: list[wire.LogEntry] = []
        """Every command's outcome, as a node's command log records it."""
        self._waiting: dict[str, asyncio.Future[Any]] = {}  # reply token -> its answer (a Reply, a StateReply)
        self._tokens = itertools.count()
        self._ids = itertools.count(1)
        self._actors: Actors | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    def successor(self, contexts: Sequence[BoundedContext], *, node_id: str | None = None) -> InMemoryRuntime:
        """A runtime of other code on this one's stores (events, snapshots, refusals, leases, schema
        registry): what a deployment of another version of the contexts finds. Stop this one first, as a
        rolling deployment drains a node; `start` raises `SchemaError` if the new code may not follow."""
        after = InMemoryRuntime(
            contexts, namespace=self.namespace, node_id=node_id or self.node_id, timeout=self.timeout
        )
        after._settings = self._settings
        after.events, after.snapshots, after.refusals = self.events, self.snapshots, self.refusals
        after.leases, after.schemas = self.leases, self.schemas
        after._ids = self._ids  # the command ids it makes go on from this one's: they are remembered
        after._placement = InMemoryPlacement(self.leases, after.node_id, sorted(after._contexts))
        return after

    async def start(self) -> Self:
        """Start serving. Idempotent."""
        if self._supervisor is None:
            ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._supervisor = asyncio.create_task(self._supervise(ready))
            try:
                await asyncio.wait([ready, self._supervisor], return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:
                await self.stop()
                raise
            if self._supervisor.done():
                self._supervisor.result()  # raises what failed
        return self

    async def stop(self) -> None:
        """Let every actor finish, snapshot and end. Idempotent."""
        if self._supervisor is not None:
            self._stopping.set()
            await asyncio.shield(self._supervisor)

    async def _supervise(self, ready: asyncio.Future[None]) -> None:
        for context in self._contexts.values():
            await register(self.schemas, self.namespace, context, self.node_id)
        await self._placement.register()
        pace = asyncio.Semaphore(16)
        leases = NodeLeases({self.namespace: self._placement}, self._hosting, renew=_always_live, pace=pace)
        async with asyncio.TaskGroup() as group:
            self._actors = Actors(
                node_id=self.node_id,
                hosting=self._hosting,
                settings=self._settings,
                events=self.events,
                snapshots=self.snapshots,
                refusals=self.refusals,
                leases=leases,
                answers=self,
                stats=self.stats,
                group=group,
                pace=pace,
                reroute=self._reroute,
            )
            sweep = group.create_task(self._actors.passivate_idle())
            ready.set_result(None)
            await self._stopping.wait()
            sweep.cancel()
            await self._actors.stop_all(timeout=30.0)
        await self._placement.deregister()

    def _started(self) -> Actors:
        if self._actors is None or self._stopping.is_set():
            raise RadixError("the in-memory runtime is not running: use it in `async with`")
        return self._actors

    # -- sending ---------------------------------------------------------------------------

    async def send(self, command: Command, *, aggregate_id: str, **options: Unpack[SendOptions]) -> Accepted:
        """Send a command as `Client.send` does: `Accepted`, or the `CommandError` of the reply."""
        context, aggregate_type = self._context_of(command)
        return outcome(context, aggregate_type, await self.reply(command, aggregate_id=aggregate_id, **options))

    async def reply(self, command: Command, *, aggregate_id: str, **options: Unpack[SendOptions]) -> wire.Reply:
        """Send a command and return its reply as it goes over the wire, whatever its status."""
        actors = self._started()
        context, aggregate_type = self._context_of(command)
        address = Address(self.namespace, context.name, aggregate_type, aggregate_id)
        command_id = options.get("command_id") or f"memory-{next(self._ids)}"
        headers = command_headers(command_id, options)
        payload = encode_command(command)
        token = f"memory.{next(self._tokens)}"
        envelope = Envelope(
            command=self._hosting.codec(address).decode_command(payload),  # as a node reads it off the wire
            type_name=type(command).__name__,
            command_id=command_id,
            expected_version=options.get("expected_version"),
            issuer=options.get("issuer"),
            correlation_id=options.get("correlation_id"),
            reply_to=token,
            subject=command_subject(address),
            payload=payload,
            headers=headers,
            received=time.monotonic(),
        )
        try:
            reply: wire.Reply = await self._answered(actors, address, envelope)
        except TimeoutError:
            raise CommandTimeoutError(command_id, envelope.subject, self.timeout) from None
        return reply

    async def read(self, aggregate_type: str, aggregate_id: str) -> AggregateState:
        """Read an aggregate as `Client.read` does: its version and state, after what was sent before."""
        actors = self._started()
        context = self._context_with(aggregate_type)
        address = Address(self.namespace, context.name, aggregate_type, aggregate_id)
        envelope = Envelope(
            command=READ,
            type_name="read",
            command_id=f"memory-read-{next(self._ids)}",
            expected_version=None,
            issuer=None,
            correlation_id=None,
            reply_to=f"memory.{next(self._tokens)}",
            subject=query_subject(address),
            payload=b"",
            headers={},
            received=time.monotonic(),
        )
        try:
            reply: wire.StateReply = await self._answered(actors, address, envelope)
        except TimeoutError:
            raise ReadTimeoutError(envelope.subject, self.timeout) from None
        return state_of(context, aggregate_type, reply, subject=envelope.subject)

    async def _answered(self, actors: Actors, address: Address, envelope: Envelope) -> Any:
        """Deliver a request to the aggregate's actor and wait for its answer."""
        assert envelope.reply_to is not None
        answered: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[envelope.reply_to] = answered
        try:
            self._deliver(actors, address, envelope)
            async with asyncio.timeout(self.timeout):
                return await answered
        finally:
            del self._waiting[envelope.reply_to]

    def _context_with(self, aggregate_type: str) -> BoundedContext:
        context = next((c for c in self._contexts.values() if aggregate_type in c.codecs), None)
        if context is None:
            raise RadixError(f"no context of this runtime has an aggregate type {aggregate_type!r}")
        return context

    def _context_of(self, command: Command) -> tuple[BoundedContext, str]:
        for context in self._contexts.values():
            try:
                return context, context.aggregate_type_of(type(command))
            except RadixError:
                continue
        raise RadixError(f"{type(command).__name__} is a command of none of {', '.join(self._contexts)}")

    def _deliver(self, actors: Actors, address: Address, envelope: Envelope) -> None:
        actor = actors.get(address) or actors.activate(address)
        try:
            actor.post(envelope)
        except MailboxFullError:
            reason = f"{address} has {self._settings.mailbox_size} commands queued; retry later"
            self._settle(
                envelope.reply_to, wire.Reply(status=wire.ERROR, command_id=envelope.command_id, reason=reason)
            )

    async def _reroute(self, actor: AggregateActor, leftovers: list[Envelope]) -> None:
        # One node: whatever an ended actor held is delivered here again, to a fresh actor.
        if self._actors is not None:
            for envelope in leftovers:
                self._deliver(self._actors, actor.address, envelope)

    # -- the actors' Answers port ----------------------------------------------------------

    async def answer(self, address: Address, envelope: Envelope, reply: wire.Reply, duplicate: bool) -> None:
        self.command_log.append(entry_of(envelope, reply, node=self.node_id, duplicate=duplicate))
        self._settle(envelope.reply_to, reply)

    async def state(self, reply_to: str | None, reply: wire.StateReply) -> None:
        self._settle(reply_to, reply)

    def _settle(self, reply_to: str | None, reply: wire.Reply | wire.StateReply) -> None:
        waiting = self._waiting.get(reply_to or "")
        if waiting is not None and not waiting.done():
            waiting.set_result(reply)

    # -- looking in ------------------------------------------------------------------------

    async def history(self, aggregate_type: str, aggregate_id: str) -> list[Event]:
        """The aggregate's events, decoded, as stored."""
        hosted = self._context_with(aggregate_type)
        address = Address(self.namespace, hosted.name, aggregate_type, aggregate_id)
        codec = hosted.codec(aggregate_type)
        commits = await self.events.read(address)
        return [codec.decode_event(e.type, e.schema, e.data) for c in commits for e in c.events]

    @property
    def live(self) -> int:
        """How many aggregates are live (activated and not passivated)."""
        return len(self._actors) if self._actors is not None else 0

    async def passivate(self) -> None:
        """Passivate every live aggregate now (each snapshots, as on a node): the next command to one
        rehydrates it from its snapshot and events."""
        actors = self._started()
        await actors.stop_all(timeout=30.0)


async def _always_live(namespace: str) -> bool:
    return True
