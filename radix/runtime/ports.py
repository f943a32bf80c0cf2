"""What an actor reaches beyond itself: a few small ports, and its node's id, settings and counters.

- `EventStore`, `SnapshotStore`, `RefusalStore` (`radix.store`): its history, snapshots and refusal
  record, on JetStream or in memory;
- `Leases`: claim its lease, check that it still holds it, hand it over (`radix.runtime.leases.NodeLeases`,
  over a `Placement`);
- `Answers`: give a command's reply and record it (the node's `Replies`; the in-memory runtime);
- `Scheduler`: run it as a task, park it, settle it when it ends (`radix.runtime.actors.Actors`).

The node wires one `ActorPorts` and every actor shares it; `radix.testing.InMemoryRuntime`
wires the same actor to in-memory twins.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from radix import wire
from radix.runtime.config import ActorConfig
from radix.runtime.mailbox import Envelope, Move
from radix.store.ports import Claim, EventStore, RefusalStore, SnapshotStore
from radix.store.refusals import refusal_budget
from radix.wire.names import Address

if TYPE_CHECKING:  # annotations only: the actor module imports this one
    from radix.runtime.actor import AggregateActor

__all__ = ["ActorPorts", "ActorSettings", "Answers", "LeaseHolder", "Leases", "Scheduler", "Stats"]


@dataclass(frozen=True, kw_only=True)
class ActorSettings(ActorConfig):
    """An actor's configuration, and what the server's limits make of it: the bytes a refusal's answer
    may take (its share of the aggregate's refusal record, one message)."""

    refusal_bytes: int

    @classmethod
    def of(cls, config: ActorConfig, max_payload: int) -> ActorSettings:
        """The settings of `config` on a server whose messages carry `max_payload` bytes."""
        return cls(
            **{f.name: getattr(config, f.name) for f in dataclasses.fields(ActorConfig)},
            refusal_bytes=refusal_budget(max_payload, config.recent_commands),
        )


@dataclass
class Stats:
    """What a node's actors have done, for tests, status and metrics."""

    activations: int = 0
    passivations: int = 0
    replayed_events: int = 0
    history_reads: int = 0
    """Reads of an aggregate's events from the store: to activate it (unless its snapshot reaches the
    stream's head, or nothing is stored) and to catch up after someone else wrote."""
    snapshots_loaded: int = 0
    snapshots_written: int = 0
    migrations: int = 0
    fenced: int = 0
    pauses: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))
    activation_seconds: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))


class LeaseHolder(Protocol):
    """An actor, as its lease sees it."""

    @property
    def address(self) -> Address: ...

    @property
    def epoch(self) -> int: ...

    @property
    def revoked(self) -> bool: ...


class Leases(Protocol):
    """The lease of an actor's aggregate (docs/placement.md)."""

    async def acquire(self, holder: LeaseHolder) -> Claim:
        """Claim the aggregate's lease (or share the one this node holds); `LeaseHeldError` if another
        live node holds it."""
        ...

    async def holder(self, holder: LeaseHolder) -> str | None:
        """None if the lease is still the holder's at its epoch, else the node that holds it now ('': none),
        as the lease's leader has it."""
        ...

    async def confirm_live(self, holder: LeaseHolder) -> bool:
        """Whether the holder may act: its node's liveness is confirmed (renewed first if it is old)."""
        ...

    async def hand_over(self, holder: LeaseHolder, move: Move) -> bool | None:
        """Reach the handover of the actor's shard, which moves to the move's target once every live actor of
        it has: True once moved, False if the move failed, None if no move is under way for its lease."""
        ...


class Answers(Protocol):
    """Where a command's outcome goes."""

    async def answer(self, address: Address, envelope: Envelope, reply: wire.Reply, duplicate: bool) -> None:
        """Reply to the command's issuer and record the outcome (`duplicate`: an id answered again)."""
        ...

    async def state(self, reply_to: str | None, reply: wire.StateReply) -> None:
        """Answer a read with the aggregate's state, or why it could not be read."""
        ...


class Scheduler(Protocol):
    """How actors run: as tasks of their node's task group, only while their mailbox holds something."""

    @property
    def pace(self) -> asyncio.Semaphore:
        """Bounds the writes of stopping actors (snapshots, lease releases) in flight at once."""
        ...

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run a background coroutine (a snapshot write); what it raises is logged."""
        ...

    def wake(self, actor: AggregateActor) -> None:
        """Run the actor as a task: it takes what its mailbox holds, then parks or ends."""
        ...

    def parked(self, actor: AggregateActor) -> None:
        """The actor's task ended with an empty mailbox: it stays live, without a task."""
        ...

    def ended(self, actor: AggregateActor) -> None:
        """The actor ended (`actor.ending` says how): release its lease or hand on what it held."""
        ...


@dataclass(frozen=True, slots=True)
class ActorPorts:
    """Everything an actor reaches, one instance per node shared by all its actors."""

    node_id: str
    settings: ActorSettings
    events: EventStore
    snapshots: SnapshotStore
    refusals: RefusalStore
    leases: Leases
    answers: Answers
    scheduler: Scheduler
    stats: Stats
