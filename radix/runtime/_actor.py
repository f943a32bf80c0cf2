"""The aggregate actor: one per live aggregate, one command at a time.

It activates from the latest snapshot and the events after it, then takes commands
from its mailbox in turn and runs the command algorithm (docs/commands.md): known
command id, true-conflict check, decide, fenced append, reload and retry on a
version conflict. An actor runs as a task only while its mailbox holds something;
then it parks, as plain state with no task, until the next item is posted (a node
holds a hundred thousand of them). It passivates when idle for `idle_timeout`,
writing a snapshot if it has moved on.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import deque
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec
import structlog

from radix import wire
from radix.domain import AggregateCodec, Event, EventData
from radix.errors import CommitTooLargeError, DomainError, StoreError, VersionConflictError
from radix.logs import logger
from radix.names import Address
from radix.runtime.placement import Claim, OwnedElsewhere
from radix.store import Cause, Commit, EventStore, Writer
from radix.store.refusals import Refusals, RefusalStore, fitted
from radix.store.snapshots import Snapshot, SnapshotStore

__all__ = [
    "PASSIVATE",
    "STOP",
    "ActorHost",
    "ActorSettings",
    "AggregateActor",
    "Envelope",
    "Mailbox",
    "Move",
    "Stats",
    "state_fingerprint",
]

#: Put in a mailbox to ask the actor to stop once everything before it is handled.
STOP = None
#: Command ids a snapshot carries at most; beyond them, activation reads the window's commits.
SNAPSHOT_IDS = 256
#: Command ids a replay from the start remembers (of its latest commits): their age is not known, and
#: counting them all as recent would send the next activation back over the whole history.
REPLAY_IDS = SNAPSHOT_IDS // 2


class Envelope(msgspec.Struct, frozen=True):
    """A decoded command, and the message it came in (to forward it unchanged).

    A struct, not a frozen dataclass: one is made per command, and a frozen dataclass's
    `__init__` sets each field through `object.__setattr__` (4.4 µs here, against 0.2)."""

    command: Any
    type_name: str
    command_id: str
    expected_version: int | None
    issuer: str | None
    correlation_id: str | None
    reply_to: str | None
    subject: str
    payload: bytes
    headers: dict[str, str]
    hops: int = 0
    received: float = 0.0


@dataclass(frozen=True, slots=True)
class Move:
    """Put in a mailbox to hand the aggregate to another node once everything before it is handled."""

    node: str
    incarnation: str
    requested: float


class _Passivate:
    """Put in a mailbox to passivate the actor if it is still idle when it gets there."""


PASSIVATE = _Passivate()
Item = Envelope | Move | _Passivate | None


@dataclass(frozen=True, kw_only=True)
class ActorSettings:
    """What an actor needs to know from its node's configuration."""

    idle_timeout: float
    snapshot_every: int
    retries: int
    mailbox_size: int
    recent_commands: int
    recent_events: int
    group_commit: int
    dedup_window: float
    dedup_max: int
    refusal_bytes: int  # the most a refusal's answer takes (its share of the record of refusals)


@dataclass
class Stats:
    """What a node's actors have done, for tests, status and metrics."""

    activations: int = 0
    passivations: int = 0
    replayed_events: int = 0
    snapshots_loaded: int = 0
    snapshots_written: int = 0
    migrations: int = 0
    fenced: int = 0
    pauses: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))
    activation_seconds: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))

    def note_pause(self, seconds: float) -> None:
        self.pauses.append(seconds)


class ActorHost(Protocol):
    """The node, as its actors see it."""

    node_id: str

    @property
    def stats(self) -> Stats: ...

    @property
    def store(self) -> EventStore: ...

    @property
    def snapshots(self) -> SnapshotStore: ...

    @property
    def refusals(self) -> RefusalStore: ...

    @property
    def pace(self) -> asyncio.Semaphore:
        """Bounds the writes of stopping actors (snapshots, lease releases) in flight at once."""
        ...

    async def acquire(self, actor: AggregateActor) -> Claim: ...

    async def still_owner(self, actor: AggregateActor) -> str | None:
        """None if the actor's lease is unchanged, else the node that holds it now."""
        ...

    async def ensure_liveness(self, actor: AggregateActor) -> bool:
        """Wait until the node's liveness is confirmed; False if it was lost (the actor is revoked)."""
        ...

    async def hand_over(self, actor: AggregateActor, move: Move) -> bool:
        """Transfer the actor's lease to the move's target; False if the lease had changed."""
        ...

    async def answer(self, actor: AggregateActor, envelope: Envelope, reply: wire.Reply, duplicate: bool) -> None: ...

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None: ...

    def wake(self, actor: AggregateActor) -> None:
        """Run the actor as a task: it takes what its mailbox holds, then parks or ends."""
        ...

    def actor_parked(self, actor: AggregateActor) -> None: ...

    def actor_stopped(self, actor: AggregateActor) -> None: ...


class Mailbox:
    """An actor's queue of commands and control requests.

    Its deque exists only while it holds something (a node holds one mailbox per live
    aggregate, most of them empty). Commands beyond `limit` are refused with
    `asyncio.QueueFull`; control requests are always taken.
    """

    __slots__ = ("_items", "_limit")

    def __init__(self, limit: int) -> None:
        self._items: deque[Item] | None = None
        self._limit = limit

    def empty(self) -> bool:
        return not self._items

    def __len__(self) -> int:
        return len(self._items) if self._items else 0

    def put(self, item: Item) -> None:
        items = self._items
        if items is None:
            items = self._items = deque()
        elif isinstance(item, Envelope) and len(items) >= self._limit:
            raise asyncio.QueueFull
        items.append(item)

    def get_nowait(self) -> Item:
        assert self._items
        return self._items.popleft()

    def release(self) -> None:
        """Drop the empty deque (the actor parks)."""
        if not self._items:
            self._items = None


class _Superseded(Exception):
    def __init__(self, node: str) -> None:
        super().__init__(node)
        self.node = node


def _in_order(
    batch: list[Envelope], todo: list[Envelope], replies: list[wire.Reply], settled: dict[str, wire.Reply]
) -> list[wire.Reply]:
    """One reply per command of `batch`: those decided (`todo`, in order), else those settled before."""
    by_id = dict(settled)
    by_id.update((envelope.command_id, reply) for envelope, reply in zip(todo, replies, strict=True))
    return [by_id[envelope.command_id] for envelope in batch]


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def state_fingerprint(codec: AggregateCodec) -> str | None:
    """A fingerprint of the aggregate's state type; None if the state cannot be snapshotted."""
    try:
        schema = msgspec.json.encode(msgspec.json.schema(codec.aggregate.state_type))
    except (TypeError, ValueError):
        return None
    return hashlib.sha256(codec.type_name.encode() + b"\0" + schema).hexdigest()[:16]


class Applied(msgspec.Struct, frozen=True, gc=False):
    """A command applied within the dedup window: the position of its commit, the aggregate's version
    after it, and when it was applied (or learnt).

    Not tracked by the garbage collector (it holds numbers only): an actor keeps one per command,
    thousands on a hot aggregate, and as tuples they were nearly all the objects each young-generation
    collection had to walk (10 ms pauses at 50,000)."""

    position: int
    version: int
    at: float


class AggregateActor:
    """The live instance of one aggregate on this node."""

    # Slots: a node may hold a hundred thousand idle actors.
    __slots__ = (
        "_held",
        "_snapshotting",
        "activated",
        "address",
        "aggregate",
        "applied",
        "busy",
        "codec",
        "ended",
        "epoch",
        "fingerprint",
        "finished",
        "hand_to",
        "host",
        "last_active",
        "leftover",
        "mailbox",
        "moving",
        "position",
        "recent",
        "refusals_revision",
        "revoked",
        "running",
        "settings",
        "snapshot_version",
        "stale",
        "state",
        "tail",
        "version",
    )

    def __init__(
        self, host: ActorHost, address: Address, codec: AggregateCodec, settings: ActorSettings, fingerprint: str | None
    ) -> None:
        self.host = host
        self.address = address
        self.codec = codec
        self.aggregate = codec.aggregate
        self.settings = settings
        self.fingerprint = fingerprint
        self.mailbox = Mailbox(settings.mailbox_size)
        self.state: Any = None
        self.version = 0
        self.position = 0
        self.snapshot_version = 0
        # Replies to the latest commands that were not accepted (rejected, conflict): they
        # cannot be derived from the stream, so each is recorded (host.refusals) before it is given.
        self.recent: dict[str, wire.Reply] | None = None
        # The revision of the aggregate's refusal record as this actor last wrote or read it; None:
        # unknown (a write failed), read again (with the lease) before the next refusal is recorded.
        self.refusals_revision: int | None = 0
        # Every command id applied within the dedup window, oldest first: (commit position,
        # version after it, when it was applied or learnt). A duplicate is answered by
        # reading its commit back.
        self.applied: dict[str, Applied] | None = None
        # The latest events (between `recent_events` and twice that), for conflict checks; dropped
        # when the actor parks.
        self.tail: list[wire.RecordedEvent] | None = None
        self.stale = False
        self.busy = False
        self._snapshotting = False
        self.epoch = 0
        self.revoked = False
        # How the actor ended, and where what was left in its mailbox goes: "idle",
        # "stopped" and "failed" release the lease; "moved", "lost", "elsewhere" and
        # "revoked" hand the leftovers on (to `hand_to`, or routed afresh if None).
        self.ended = "stopped"
        self.hand_to: str | None = None
        self.leftover: tuple[Envelope, ...] = ()
        self.moving = False
        self._held: tuple[Item, ...] = ()  # a control request met while batching: handled next
        self.activated = False
        self.running = False  # a task is taking the mailbox; False: parked, or not started yet
        self.finished = False
        self.last_active = time.monotonic()

    # -- lifecycle -------------------------------------------------------------------------

    def post(self, item: Item) -> None:
        """Queue a command (refused with `asyncio.QueueFull` past the mailbox's limit) or a control
        request, and run the actor if it is parked."""
        self.mailbox.put(item)
        if isinstance(item, Envelope):
            self.last_active = time.monotonic()
        if not self.running and not self.finished:
            self.running = True
            self.host.wake(self)

    async def run(self) -> None:
        """Acquire the lease and activate (the first time), then take what the mailbox holds; park or end."""
        a = self.address
        structlog.contextvars.bind_contextvars(
            node=self.host.node_id,
            namespace=a.namespace,
            context=a.context,
            aggregate=f"{a.aggregate_type}/{a.aggregate_id}",
        )
        ended = True
        try:
            if not self.activated:
                if not await self._start():
                    return
                self.activated = True
            ended = await self._serve()
        finally:
            self.running = False
            if ended:
                self.finished = True
                self.host.actor_stopped(self)
            else:
                self.host.actor_parked(self)

    async def _start(self) -> bool:
        """Acquire the lease and activate; False (and how it ended) if that failed."""
        try:
            self.epoch, taken_over = await self.host.acquire(self)
        except OwnedElsewhere as e:
            self.ended, self.hand_to = "elsewhere", e.owner.node
            return False
        except Exception as e:
            logger.error("lease not acquired", error=repr(e))
            self.ended = "unleased"
            await self._fail_queued(f"ownership of the aggregate could not be settled: {e}; retry")
            return False
        try:
            began = time.monotonic()
            await self._activate(taken_over)
            self.host.stats.activation_seconds.append(time.monotonic() - began)
            logger.debug("activated", epoch=self.epoch, version=self.version)
        except Exception as e:
            logger.error("activation failed", error=repr(e))
            self.ended = "failed"
            await self._fail_queued(f"the aggregate could not be loaded: {e}; retry later")
            return False
        return True

    async def _serve(self) -> bool:
        """Handle what the mailbox holds; True if the actor ended, False when it is empty (park)."""
        while True:
            item: Item
            if self._held:
                item, self._held = self._held[0], ()
            elif self.mailbox.empty():
                # Parked: no queue, and no events kept (a conflict check reads them back from the store).
                self.mailbox.release()
                self.tail = None
                return False
            else:
                item = self.mailbox.get_nowait()
            if self.revoked:  # its node lost liveness: hand everything on, write nothing
                self.ended, self.hand_to = "revoked", None
                if isinstance(item, Envelope):
                    self.leftover = (item,)
                return True
            if item is STOP:
                if await self._may_end():
                    self.ended = "stopped"
                    return True
                continue  # more arrived after the stop request: it no longer applies
            if isinstance(item, _Passivate):
                idle = time.monotonic() - self.last_active >= self.settings.idle_timeout
                if idle and await self._may_end():
                    self.host.stats.passivations += 1
                    self.ended = "idle"
                    return True
                continue
            if isinstance(item, Move):
                if await self._move(item):
                    return True
                continue
            batch = self._batch(item)
            if self.revoked or not await self.host.ensure_liveness(self):
                self.ended, self.hand_to = "revoked", None
                self.leftover = tuple(batch)
                return True
            self.busy = True
            try:
                await self._turn(batch)
            except _Superseded as e:
                self.ended, self.hand_to = "lost", e.node
                self.leftover = tuple(batch)
                return True
            finally:
                self.busy = False

    async def _may_end(self) -> bool:
        """Snapshot if there is anything new, then say whether the actor may end: nothing came meanwhile.

        The snapshot is written while the actor is still registered, so a command arriving
        meanwhile waits in its mailbox, and the next activation finds the snapshot.
        """
        if self.mailbox.empty():
            async with self.host.pace:  # many actors stop at once on shutdown: pace their writes
                await self._snapshot_if_moved()
        return self.mailbox.empty()

    def _batch(self, first: Envelope) -> list[Envelope]:
        """`first` and the commands queued behind it, up to `group_commit`: decided in turn, written as one commit."""
        batch = [first]
        while len(batch) < self.settings.group_commit and not self.mailbox.empty():
            item = self.mailbox.get_nowait()
            if not isinstance(item, Envelope):
                self._held = (item,)  # a stop or move request: handle it after this batch
                break
            batch.append(item)
        return batch

    async def _move(self, move: Move) -> bool:
        """Snapshot (if anything changed since the last one), then hand the lease over; True if the
        aggregate now belongs to the target."""
        await self._snapshot_if_moved()  # an unchanged aggregate's last snapshot serves the new owner as it is
        if await self.host.hand_over(self, move):
            self.ended, self.hand_to = "moved", move.node
            self.host.stats.migrations += 1
            self.host.stats.note_pause(time.monotonic() - move.requested)
            return True
        holder = await self.host.still_owner(self)
        if holder is not None:
            self.ended, self.hand_to = "lost", holder
            return True
        return False

    def take_leftovers(self) -> list[Envelope]:
        """What is left to hand on after the actor ended: the rest of its mailbox."""
        leftovers, self.leftover = list(self.leftover), ()
        while not self.mailbox.empty():
            item = self.mailbox.get_nowait()
            if isinstance(item, Envelope):
                leftovers.append(item)
        return leftovers

    async def _fail_queued(self, reason: str) -> None:
        while not self.mailbox.empty():
            envelope = self.mailbox.get_nowait()
            if isinstance(envelope, Envelope):
                reply = wire.Reply(status=wire.ERROR, command_id=envelope.command_id, reason=reason)
                await self.host.answer(self, envelope, reply, False)

    async def _turn(self, batch: list[Envelope]) -> None:
        fresh: list[Envelope] = []
        for envelope in batch:
            known = None
            if self.applied and envelope.command_id in self.applied:
                known = await self._applied_reply(envelope.command_id)
            elif self.recent:
                known = self.recent.get(envelope.command_id)
            if known is not None:
                await self.host.answer(self, envelope, known, True)
            else:
                fresh.append(envelope)
        if not fresh:
            return
        try:
            replies = await self._handle(fresh)
        except _Superseded:
            raise
        except Exception as e:  # never let one command kill the actor
            logger.exception("command failed")
            self.stale = True
            replies = [self._error(env.command_id, f"internal error: {e!r}; retry") for env in fresh]
        # Refusals are cut to their share of the record before they are recorded, and given as recorded.
        budget = self.settings.refusal_bytes
        refused = {r.command_id: fitted(r, budget) for r in replies if r.status in (wire.REJECTED, wire.CONFLICT)}
        if refused:
            why = await self._record_refusals(list(refused.values()))
            given = refused if why is None else {command_id: self._error(command_id, why) for command_id in refused}
            replies = [given.get(r.command_id, r) for r in replies]
        answered: set[str] = set()
        for envelope, reply in zip(fresh, replies, strict=True):
            await self.host.answer(self, envelope, reply, envelope.command_id in answered)
            answered.add(envelope.command_id)

    async def _record_refusals(self, refused: list[wire.Reply]) -> str | None:
        """Record the refusals (with the latest before them) before they are given; None once recorded,
        else why not: they are then answered as errors, and the next turn reloads first.

        The write is a compare-and-set on the record's revision: it fails once another node has
        taken the aggregate over (it writes the record before answering anything), so no refusal
        is given that the new owner would not give again.
        """
        latest = self._with_refusals(refused)
        try:
            if self.refusals_revision is None:
                raise StoreError("the refusal record's revision is unknown")
            self.refusals_revision = await self.host.refusals.save(
                self.address, list(latest.values()), revision=self.refusals_revision
            )
        except Exception as e:
            logger.warning("refusal not recorded; reloading before the next command", error=repr(e))
            self.refusals_revision, self.stale = None, True
            return f"the command was refused, but the refusal could not be recorded ({e}); retry"
        self.recent = latest
        return None

    # -- loading ---------------------------------------------------------------------------

    async def _activate(self, taken_over: bool) -> None:
        """Load the latest snapshot and catch up with the stream, while the refusal record is read (fenced
        first after a takeover, so that the former owner can no longer refuse anything)."""
        self.state = self.aggregate.initial_state()
        refusals = self.host.refusals
        reading = asyncio.ensure_future(refusals.fence(self.address) if taken_over else refusals.load(self.address))
        reading.add_done_callback(_retrieved)  # if the activation fails first, the read's own error is no news
        try:
            snapshot = await self._load_snapshot()
            self.host.stats.activations += 1
            ids_from = 0
            if snapshot is not None:
                self.host.stats.snapshots_loaded += 1
                self.state = msgspec.json.decode(snapshot.state, type=self.aggregate.state_type)
                self.version = self.snapshot_version = snapshot.version
                self.position = snapshot.position
                self._remember(snapshot.recent)
                # Its ids are as old as the snapshot at least, and the commits it points back to for the
                # rest are still in the dedup window only while the snapshot is.
                taken = snapshot.taken_at or time.time()
                if snapshot.applied:
                    self.applied = {c: Applied(position, version, taken) for c, position, version in snapshot.applied}
                if time.time() - taken < self.settings.dedup_window:
                    ids_from = snapshot.window_from
            if not await self._catch_up(ids_from) and snapshot is not None:
                logger.warning("snapshot does not continue into the stream; replaying from the start")
                self.state, self.version, self.position, self.snapshot_version = self.aggregate.initial_state(), 0, 0, 0
                await self._catch_up()
            self._adopt_refusals(await reading)
        finally:
            reading.cancel()  # a no-op once it is done

    def _adopt_refusals(self, recorded: Refusals) -> None:
        """Answer from the record's refusals from now on (but for commands since applied)."""
        applied = self.applied or {}
        self._remember(r for r in recorded.replies if r.command_id not in applied)
        self.refusals_revision = recorded.revision

    async def _load_snapshot(self) -> Snapshot | None:
        if self.fingerprint is None or self.settings.snapshot_every <= 0:
            return None
        try:
            snapshot = await self.host.snapshots.load(self.address)
        except Exception as e:
            logger.warning("snapshot not readable; replaying", error=repr(e))
            return None
        if snapshot is None or snapshot.fingerprint != self.fingerprint:
            return None
        return snapshot

    async def _catch_up(self, ids_from: int = 0) -> bool:
        """Apply the events after the current version; False if they do not continue it.

        With `ids_from` (a snapshot that could not carry every command id of the dedup window),
        the commits from that position on are read too, to learn their command ids.
        """
        if ids_from:
            commits = await self.host.store.read(self.address, start=ids_from)
            for commit in commits:
                if commit.version <= self.version:
                    self._note_applied(commit)
            commits = [c.after(self.version) for c in commits if c.version > self.version]
        else:
            commits = await self.host.store.read(
                self.address, after=self.version, start=self.position + 1 if self.position else 0
            )
        if commits and commits[0].first_version != self.version + 1:
            return False
        remember_from = len(commits) - REPLAY_IDS if self.version == 0 else 0
        for index, commit in enumerate(commits):
            self._apply(commit, note_ids=index >= remember_from)
            self.host.stats.replayed_events += len(commit.events)
        self.stale = False
        return True

    def _apply(self, commit: Commit, *, note_ids: bool = True) -> None:
        state = self.state
        for recorded in commit.events:
            state = self.aggregate.evolve(state, self._decode(recorded))
        self.state = state
        self.version = commit.version
        self.position = commit.position
        self._note_committed(commit, note_ids=note_ids)

    def _note_committed(self, commit: Commit, *, note_ids: bool = True) -> None:
        """Keep the commit's events in the tail and (unless told not to) its command ids for the dedup window."""
        tail = self.tail
        if tail is None:
            tail = self.tail = []
        tail.extend(commit.events)
        if len(tail) > 2 * self.settings.recent_events:
            del tail[: -self.settings.recent_events]
        if note_ids:
            self._note_applied(commit)

    def _note_applied(self, commit: Commit) -> None:
        """Remember the commit's command ids for the dedup window (and at most `dedup_max` ids)."""
        applied, now = self.applied, time.time()
        if applied is None:
            applied = self.applied = {}
        for recorded in commit.events:
            applied[recorded.command_id] = Applied(commit.position, recorded.version, now)
        # Oldest first, in one pass: `next(iter(applied))` per id dropped would step over every slot
        # dropped before it, again and again.
        horizon, excess = now - self.settings.dedup_window, len(applied) - self.settings.dedup_max
        dropped: list[str] = []
        for command_id, entry in applied.items():
            if entry.at >= horizon and len(dropped) >= excess:
                break
            dropped.append(command_id)
        for command_id in dropped:
            del applied[command_id]

    async def _applied_reply(self, command_id: str) -> wire.Reply:
        """The original answer to an applied command older than `recent`: its events, read back."""
        assert self.applied is not None
        applied = self.applied[command_id]
        try:
            commit = await self.host.store.commit_at(self.address, applied.position)
        except StoreError as e:
            return self._error(command_id, f"{command_id} was applied, but its events could not be read: {e}; retry")
        events = [e for e in commit.events if e.command_id == command_id] if commit is not None else []
        return wire.Reply(status=wire.ACCEPTED, command_id=command_id, version=applied.version, events=events)

    def _decode(self, recorded: wire.RecordedEvent) -> Event:
        return self.codec.decode_event(recorded.type, recorded.schema, recorded.data)

    def _remember(self, replies: Iterable[wire.Reply]) -> None:
        """Answer these refusals from memory from now on (the latest `recent_commands` are kept)."""
        self.recent = self._with_refusals(replies)

    def _with_refusals(self, replies: Iterable[wire.Reply]) -> dict[str, wire.Reply]:
        """`recent` with `replies` added as the newest, cut to the latest `recent_commands`."""
        latest = dict(self.recent) if self.recent else {}
        for reply in replies:
            latest.pop(reply.command_id, None)
            latest[reply.command_id] = reply
        while len(latest) > self.settings.recent_commands:
            del latest[next(iter(latest))]
        return latest

    # -- the command algorithm -------------------------------------------------------------

    async def _handle(self, batch: list[Envelope]) -> list[wire.Reply]:
        """Decide every command of the batch in turn, append all their events as one fenced commit.

        After a refused append the actor reloads, and the reloaded history may already hold some
        of the batch (a former owner wrote them): those are answered as duplicates, never applied
        again; the rest are decided afresh.
        """
        settled: dict[str, wire.Reply] = {}
        todo = batch
        if self.stale:
            # A failed write or read: it may have landed, others may have written (and taken over)
            # meanwhile. What the reloaded history holds is answered from it, not decided again.
            todo = await self._reload_and_settle(todo, settled)
            if not todo:
                return _in_order(batch, todo, [], settled)
        for _ in range(self.settings.retries + 1):
            stored = await self._stored_after(
                min((e.expected_version for e in todo if e.expected_version is not None), default=self.version)
            )
            replies, data, causes, pending = self._decide_all(todo, stored)
            if not data:
                # Nothing to write, so no fence vouches for the state these refusals were decided
                # on: make sure it is the stored state (a read may have come from a lagging replica).
                if await self.host.store.head(self.address) != self.position:
                    todo = await self._reload_and_settle(todo, settled)
                    if not todo:
                        return _in_order(batch, todo, [], settled)
                    continue
                return _in_order(batch, todo, replies, settled)
            first = causes[0]
            writer = Writer(self.host.node_id, self.epoch)
            try:
                commit = await self.host.store.append(
                    self.address,
                    data,
                    expected_version=self.version,
                    command_id=first.command_id,
                    correlation_id=first.correlation_id,
                    issuer=first.issuer,
                    causes=causes,
                    writer=writer,
                )
            except VersionConflictError:
                # Someone else appended: never retry on the old state. Reload, and step down if
                # the lease moved (the new owner handles the commands); else decide again.
                self.host.stats.fenced += 1
                logger.info("version conflict on append; reloading", expected=self.version)
                todo = await self._reload_and_settle(todo, settled)
                if not todo:
                    return _in_order(batch, todo, [], settled)
                continue
            except CommitTooLargeError as e:
                if len(todo) > 1:  # together too large: write them one by one
                    one_by_one = [reply for env in todo for reply in await self._handle([env])]
                    return _in_order(batch, todo, one_by_one, settled)
                return _in_order(batch, todo, [self._error(env.command_id, str(e)) for env in todo], settled)
            except StoreError as e:
                self.stale = True
                return _in_order(batch, todo, [self._error(env.command_id, str(e)) for env in todo], settled)
            mine = (
                commit.writer == writer
                and commit.first_version == self.version + 1
                and commit.version == self.version + len(data)
                and commit.command_id == first.command_id
            )
            if not mine:
                # The store answered with a commit this actor did not just write: a command of the
                # batch was stored before (by a former owner, or an earlier attempt). Take history as
                # it is, make sure the aggregate is still ours, answer what is stored, decide the rest.
                todo = await self._reload_and_settle(todo, settled)
                if not todo:
                    return _in_order(batch, todo, [], settled)
                continue
            self.state, self.version, self.position = pending, commit.version, commit.position
            self._note_committed(commit)
            self._maybe_snapshot()
            by_command: dict[str, list[wire.RecordedEvent]] = {}
            for recorded in commit.events:
                by_command.setdefault(recorded.command_id, []).append(recorded)
            accepted = [
                wire.Reply(
                    status=wire.ACCEPTED,
                    command_id=r.command_id,
                    version=by_command[r.command_id][-1].version,
                    events=by_command[r.command_id],
                )
                if r.status == wire.ACCEPTED and r.command_id in by_command
                else r
                for r in replies
            ]
            return _in_order(batch, todo, accepted, settled)
        attempts = self.settings.retries + 1
        gave_up = f"gave up after {attempts} version conflicts: the aggregate is being written elsewhere; retry"
        return _in_order(batch, todo, [self._error(env.command_id, gave_up) for env in todo], settled)

    async def _reload_and_settle(self, todo: list[Envelope], settled: dict[str, wire.Reply]) -> list[Envelope]:
        """Reload (stepping down if the aggregate is owned elsewhere); answer the commands the reloaded
        history holds as duplicates (into `settled`), and return those still to decide."""
        await self._reload()
        for envelope in todo:
            if self.applied and envelope.command_id in self.applied and envelope.command_id not in settled:
                settled[envelope.command_id] = await self._applied_reply(envelope.command_id)
        return [e for e in todo if e.command_id not in settled]

    async def _reload(self) -> None:
        """Catch up with the stream, then make sure the lease is still this actor's; `_Superseded` if not.

        In that order: once the lease (read from its leader) still names this actor after the tail
        was read, a takeover can only come later, and the new owner's first write fences this
        actor's next append. Checked the other way round, a takeover and its write could slip in
        between, and the actor would write after them under its old epoch.
        """
        await self._catch_up()
        try:
            if self.refusals_revision is None:  # read before the lease: a takeover after it fences it
                self._adopt_refusals(await self.host.refusals.load(self.address))
            holder = await self.host.still_owner(self)
        except Exception as e:
            logger.warning("ownership could not be confirmed: stepping down", error=repr(e))
            raise _Superseded("") from None
        if holder is not None:
            logger.warning("the aggregate is owned elsewhere now: stepping down", owner=holder)
            raise _Superseded(holder)

    def _decide_all(
        self, batch: list[Envelope], stored: list[wire.RecordedEvent]
    ) -> tuple[list[wire.Reply], list[EventData], list[Cause], Any]:
        """Run conflict checks and `decide` for each command in turn, on the state the earlier ones leave."""
        state, version = self.state, self.version
        replies: list[wire.Reply] = []
        data: list[EventData] = []
        causes: list[Cause] = []
        pending: list[wire.RecordedEvent] = []
        decided: dict[str, wire.Reply] = {}
        for envelope in batch:
            if replies:
                decided.setdefault(replies[-1].command_id, replies[-1])
            command_id = envelope.command_id
            earlier = decided.get(command_id)
            if earlier is not None:  # the same command twice in one batch: one outcome
                replies.append(earlier)
                continue
            expected = envelope.expected_version
            if expected is not None and expected > version:
                replies.append(
                    self._error(
                        command_id,
                        f"expected_version {expected} is ahead of the aggregate's version {version}; "
                        "send the version you last saw",
                    )
                )
                continue
            if expected is not None and expected < version:
                concurrent = [e for e in (*stored, *pending) if e.version > expected]
                reason = self.aggregate.conflicts(envelope.command, [self._decode(e) for e in concurrent])
                if reason is not None:
                    replies.append(
                        wire.Reply(
                            status=wire.CONFLICT,
                            command_id=command_id,
                            version=version,
                            reason=reason,
                            conflicts=concurrent,
                        )
                    )
                    continue
            try:
                events = list(self.aggregate.decide(state, envelope.command))
            except DomainError as e:
                replies.append(
                    wire.Reply(status=wire.REJECTED, command_id=command_id, version=version, reason=e.reason)
                )
                continue
            except Exception as e:
                logger.exception("decide raised", command_id=command_id)
                replies.append(self._error(command_id, f"decide raised {e!r}: a bug in the aggregate's code"))
                continue
            try:
                encoded = [self.codec.encode_event(e) for e in events]
                after = self._evolve_all(state, events)
            except Exception as e:
                logger.exception("decide returned events that could not be applied", command_id=command_id)
                replies.append(self._error(command_id, f"the events decided could not be applied: {e!r}"))
                continue
            cause = Cause(command_id, envelope.correlation_id, envelope.issuer)
            for offset, event in enumerate(encoded, start=1):
                pending.append(
                    wire.RecordedEvent(
                        type=event.type,
                        schema=event.schema,
                        version=version + offset,
                        data=event.data,
                        command_id=command_id,
                    )
                )
            data.extend(encoded)
            causes.extend([cause] * len(encoded))
            state, version = after, version + len(encoded)
            replies.append(wire.Reply(status=wire.ACCEPTED, command_id=command_id, version=version))
        return replies, data, causes, state

    def _evolve_all(self, state: Any, events: Sequence[Event]) -> Any:
        for event in events:
            state = self.aggregate.evolve(state, event)
        return state

    async def _stored_after(self, version: int) -> list[wire.RecordedEvent]:
        """Committed events after `version`: from memory if it holds them, else from the store."""
        if version >= self.version:
            return []
        if self.tail and self.tail[0].version <= version + 1:  # in memory
            return [e for e in self.tail if e.version > version]
        store, start = self.host.store, self._position_before(version)
        commits = await store.read(self.address, after=version, start=start)
        if not commits or commits[-1].version < self.version:
            # A replica that lags answered, without events the actor has applied (so they are stored):
            # read the rest from the leader, or the conflict check would miss them.
            resume = commits[-1].position + 1 if commits else start
            commits += await store.read(self.address, after=version, start=resume, leader=True)
        return [e for c in commits for e in c.events]

    def _position_before(self, version: int) -> int:
        """A stream position no later than the commit holding event `version + 1`: that of a commit
        remembered (within the dedup window) to hold an event at or before `version`; 0 if none is.
        Without it, a read after a version scans the aggregate's history from its start."""
        if self.applied:
            for entry in reversed(self.applied.values()):
                if entry.version <= version:
                    return entry.position
        return 0

    @staticmethod
    def _error(command_id: str, reason: str) -> wire.Reply:
        return wire.Reply(status=wire.ERROR, command_id=command_id, reason=reason)

    # -- snapshots -------------------------------------------------------------------------

    def _maybe_snapshot(self) -> None:
        every = self.settings.snapshot_every
        if every > 0 and self.version - self.snapshot_version >= every and not self._snapshotting:
            self._snapshotting = True
            self.host.spawn(self._write_snapshot())

    async def _snapshot_if_moved(self) -> None:
        moved = self.version > self.snapshot_version
        if self.settings.snapshot_every > 0 and moved and not self._snapshotting:
            self._snapshotting = True
            await self._write_snapshot()

    def _window_ids(self) -> tuple[list[tuple[str, int, int]], int]:
        """The command ids of the dedup window a snapshot carries (the latest `SNAPSHOT_IDS`, oldest first)
        and, if the window holds more, the position of its oldest id's commit (the next activation reads
        them from there on); else 0. Reads the latest ids only: a hot aggregate remembers thousands."""
        applied = self.applied or {}
        horizon = time.time() - self.settings.dedup_window
        latest: list[tuple[str, int, int]] = []
        for command_id, entry in reversed(applied.items()):
            if entry.at < horizon:
                break
            if len(latest) == SNAPSHOT_IDS:
                oldest = next(e.position for e in applied.values() if e.at >= horizon)
                return latest[::-1], oldest
            latest.append((command_id, entry.position, entry.version))
        return latest[::-1], 0

    async def _write_snapshot(self) -> None:
        if self.fingerprint is None:
            return
        version, position = self.version, self.position
        try:
            carried, window_from = self._window_ids()
            snapshot = Snapshot(
                version=version,
                position=position,
                fingerprint=self.fingerprint,
                state=msgspec.Raw(msgspec.json.encode(self.state)),
                taken_at=time.time(),
                applied=carried,
                window_from=window_from,
            )
            await self.host.snapshots.save(self.address, snapshot)
            self.snapshot_version = version
            self.host.stats.snapshots_written += 1
        except Exception as e:  # a snapshot is an optimisation: log and go on
            logger.warning("snapshot not written", error=repr(e), version=version)
        finally:
            self._snapshotting = False
