"""What an actor holds of its aggregate's history, and how it loads and keeps it.

The state at a version and a stream position, the latest events (for conflict checks while
busy), the command ids of the dedup window and the replies of the latest refusals. It is
loaded from the latest snapshot and the events after it (docs/commands.md, "The actor"),
kept current as commits land, and written back as snapshots.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Iterable, Mapping
from typing import Any

import msgspec

from radix import wire
from radix.domain import AggregateCodec, Event
from radix.errors import StoreError
from radix.observability.logs import logger
from radix.runtime import algorithm
from radix.runtime.dedup import SNAPSHOT_IDS, DedupWindow, RefusalMemory, RefusedIds, reused
from radix.runtime.ports import ActorPorts
from radix.store.commit import Commit
from radix.store.ports import Refusals
from radix.store.refusals import fence
from radix.store.snapshots import Snapshot
from radix.wire.names import Address

__all__ = ["REPLAY_IDS", "ActorHistory", "state_fingerprint"]

#: Command ids a replay from the start remembers (of its latest commits): their age is not known, and
#: counting them all as recent would send the next activation back over the whole history.
REPLAY_IDS = SNAPSHOT_IDS // 2


_NOTHING: frozenset[tuple[str, str]] = frozenset()
#: One set object per distinct set of (event type, schema version): most aggregates of a type share one.
_HOLDS: dict[frozenset[tuple[str, str]], frozenset[tuple[str, str]]] = {_NOTHING: _NOTHING}


def _interned(holds: frozenset[tuple[str, str]]) -> frozenset[tuple[str, str]]:
    return _HOLDS.setdefault(holds, holds)


def state_fingerprint(codec: AggregateCodec) -> str | None:
    """A fingerprint of the aggregate's state type; None if the state cannot be snapshotted."""
    try:
        schema = msgspec.json.encode(msgspec.json.schema(codec.aggregate.state_type))
    except (TypeError, ValueError):
        return None
    return hashlib.sha256(codec.type_name.encode() + b"\0" + schema).hexdigest()[:16]


class ActorHistory:
    """One aggregate's state and recent history, as its actor holds them."""

    # Slots: a node may hold a hundred thousand of them.
    __slots__ = (
        "address",
        "applied",
        "codec",
        "fingerprint",
        "holds",
        "ports",
        "position",
        "recent",
        "refusals_revision",
        "refused",
        "snapshot_version",
        "snapshotting",
        "stale",
        "state",
        "tail",
        "version",
    )

    def __init__(self, address: Address, codec: AggregateCodec, fingerprint: str | None, ports: ActorPorts) -> None:
        self.address = address
        self.codec = codec
        self.fingerprint = fingerprint
        self.ports = ports
        self.state: Any = None
        self.version = 0
        self.position = 0
        self.snapshot_version = 0
        # Every command id applied within the dedup window, oldest first. A duplicate is answered
        # by reading its commit back.
        self.applied: DedupWindow | None = None
        # Replies to the latest commands that were not accepted (rejected, conflict): they cannot
        # be derived from the stream, so each is recorded (ports.refusals) before it is given.
        self.recent: RefusalMemory | None = None
        # Every command id refused within the dedup window on this actor, beyond the whole replies kept.
        self.refused: RefusedIds | None = None
        # The revision of the aggregate's refusal record as this actor last wrote or read it; None:
        # unknown (a write failed), read again (with the lease) before the next refusal is recorded.
        self.refusals_revision: int | None = 0
        # The latest events (between `recent_events` and twice that), for conflict checks; dropped
        # when the actor parks.
        self.tail: list[wire.RecordedEvent] | None = None
        # A write or read failed: it may have landed, others may have written meanwhile. Reload first.
        self.stale = False
        self.snapshotting = False
        # Every (event type, schema version) in the history: a snapshot carries them, so that code which
        # cannot read one of them never takes the snapshot's state and writes after it.
        self.holds: frozenset[tuple[str, str]] = _NOTHING

    # -- loading ---------------------------------------------------------------------------

    async def activate(self, taken_over: bool) -> None:
        """Load the latest snapshot and catch up with the stream, while the refusal record is read (fenced
        first after a takeover, so that the former owner can no longer refuse anything).

        Where snapshots are kept, the stream's head is read beside the snapshot: a history that is
        empty (a new aggregate), or that the snapshot reaches to its end (one passivated), then needs no
        read of its events, which would be a round trip of its own after the snapshot's.

        Any of them failing fails the activation with its own error (the others are cancelled)."""
        try:
            async with asyncio.TaskGroup() as group:
                refusals = self.ports.refusals
                reading = group.create_task(
                    fence(refusals, self.address) if taken_over else refusals.load(self.address)
                )
                head = group.create_task(self.ports.events.head(self.address)) if self._snapshots() else None
                await self._load(head)
                self.adopt_refusals(await reading)
        except BaseExceptionGroup as failed:
            raise failed.exceptions[0] from None

    def _snapshots(self) -> bool:
        return self.fingerprint is not None and self.ports.settings.snapshot_every > 0

    async def _load(self, head: Awaitable[int] | None) -> None:
        ports, aggregate = self.ports, self.codec.aggregate
        self.state = aggregate.initial_state()
        snapshot = await self._load_snapshot()
        ports.stats.activations += 1
        last = await head if head is not None else None
        if last == 0:
            return  # nothing stored (a snapshot of a history that is gone does not count)
        ids_from = 0
        if snapshot is not None:
            assert snapshot.holds is not None
            for type_name, schema in snapshot.holds:
                unreadable = self.codec.unreadable(type_name, schema)
                if unreadable is not None:
                    raise unreadable
            self.holds = _interned(frozenset((t, s) for t, s in snapshot.holds))
            ports.stats.snapshots_loaded += 1
            self.state = msgspec.json.decode(snapshot.state, type=aggregate.state_type)
            self.version = self.snapshot_version = snapshot.version
            self.position = snapshot.position
            self.remember(snapshot.recent)
            # Its ids are as old as the snapshot at least, and the commits it points back to for the
            # rest are still in the dedup window only while the snapshot is.
            taken = snapshot.taken_at or time.time()
            if snapshot.applied:
                self.applied = DedupWindow.carried(snapshot.applied, taken)
            if time.time() - taken < ports.settings.dedup_window:
                ids_from = snapshot.window_from
            if last == snapshot.position and not ids_from:
                return  # the snapshot reaches the stream's head
        if not await self.catch_up(ids_from) and snapshot is not None:
            logger.warning("snapshot does not continue into the stream; replaying from the start")
            self.state, self.version, self.position, self.snapshot_version = aggregate.initial_state(), 0, 0, 0
            self.holds = _NOTHING
            await self.catch_up()

    async def _load_snapshot(self) -> Snapshot | None:
        if not self._snapshots():
            return None
        try:
            snapshot = await self.ports.snapshots.load(self.address)
        except Exception as e:
            logger.warning("snapshot not readable; replaying", error=repr(e))
            return None
        if snapshot is None or snapshot.fingerprint != self.fingerprint or snapshot.holds is None:
            return None
        return snapshot

    async def catch_up(self, ids_from: int = 0) -> bool:
        """Apply the events after the current version; False if they do not continue it.

        With `ids_from` (a snapshot that could not carry every command id of the dedup window),
        the commits from that position on are read too, to learn their command ids.
        """
        events = self.ports.events
        self.ports.stats.history_reads += 1
        if ids_from:
            commits = await events.read(self.address, start=ids_from)
            for commit in commits:
                if commit.version <= self.version:
                    self.note_applied(commit)
            commits = [c.after(self.version) for c in commits if c.version > self.version]
        else:
            commits = await events.read(
                self.address, after=self.version, start=self.position + 1 if self.position else 0
            )
        if commits and commits[0].first_version != self.version + 1:
            return False
        remember_from = len(commits) - REPLAY_IDS if self.version == 0 else 0
        for index, commit in enumerate(commits):
            self._apply(commit, note_ids=index >= remember_from)
            self.ports.stats.replayed_events += len(commit.events)
        self.stale = False
        return True

    def _apply(self, commit: Commit, *, note_ids: bool) -> None:
        state, aggregate = self.state, self.codec.aggregate
        for recorded in commit.events:
            state = aggregate.evolve(state, self.decode(recorded))
        self.state = state
        self.version = commit.version
        self.position = commit.position
        self._note_committed(commit, note_ids=note_ids)

    def committed(self, commit: Commit, state: Any) -> None:
        """The actor's own commit landed, bringing the aggregate to `state`."""
        self.state, self.version, self.position = state, commit.version, commit.position
        self._note_committed(commit, note_ids=True)
        self._maybe_snapshot()

    def _note_committed(self, commit: Commit, *, note_ids: bool) -> None:
        """Keep the commit's events in the tail and (unless told not to) its command ids for the dedup window."""
        tail, keep, holds = self.tail, self.ports.settings.recent_events, self.holds
        if tail is None:
            tail = self.tail = []
        tail.extend(commit.events)
        for recorded in commit.events:
            if (recorded.type, recorded.schema) not in holds:
                holds = self.holds = _interned(holds | {(recorded.type, recorded.schema)})
        if len(tail) > 2 * keep:
            del tail[:-keep]
        if note_ids:
            self.note_applied(commit)

    def note_applied(self, commit: Commit) -> None:
        """Remember the commit's command ids for the dedup window."""
        applied = self.applied
        if applied is None:
            applied = self.applied = DedupWindow()
        settings = self.ports.settings
        applied.note(commit, now=time.time(), keep_for=settings.dedup_window, keep_at_most=settings.dedup_max)

    def decode(self, recorded: wire.RecordedEvent) -> Event:
        return self.codec.decode_event(recorded.type, recorded.schema, recorded.data)

    def park(self) -> None:
        """The actor parks: no events are kept (a conflict check reads them back from the store)."""
        self.tail = None

    # -- reading back ----------------------------------------------------------------------

    async def stored_after(self, version: int) -> list[wire.RecordedEvent]:
        """Committed events after `version`: from memory if it holds them, else from the store."""
        if version >= self.version:
            return []
        if self.tail and self.tail[0].version <= version + 1:  # in memory
            return [e for e in self.tail if e.version > version]
        events = self.ports.events
        start = self.applied.position_before(version) if self.applied else 0
        commits = await events.read(self.address, after=version, start=start)
        if not commits or commits[-1].version < self.version:
            # A replica that lags answered, without events the actor has applied (so they are stored):
            # read the rest from the leader, or the conflict check would miss them.
            resume = commits[-1].position + 1 if commits else start
            commits += await events.read(self.address, after=version, start=resume, leader=True)
        return [e for c in commits for e in c.events]

    async def known(self, command_id: str, digest: str) -> wire.Reply | None:
        """The first outcome of a command handled before (applied within the window, or refused lately), or
        an error if that command had another payload than the one of `digest` (its id was reused)."""
        if self.applied and command_id in self.applied:
            return await self.applied_reply(command_id, digest)
        refused = self.refused.get(command_id) if self.refused else None
        if self.recent and command_id in self.recent:
            first: wire.Reply = self.recent[command_id]
            return reused(first, refused.digest if refused else None, digest)
        if refused is not None:
            assert self.refused is not None
            return reused(self.refused.reply(command_id), refused.digest, digest)
        return None

    async def applied_reply(self, command_id: str, digest: str) -> wire.Reply:
        """The original answer to an applied command (its events, read back), or an error if it had another
        payload than the one of `digest`."""
        assert self.applied is not None
        applied = self.applied[command_id]
        try:
            commit = await self.ports.events.commit_at(self.address, applied.position)
        except StoreError as e:
            reason = f"{command_id} was applied, but its events could not be read: {e}; retry"
            return algorithm.error(command_id, reason)
        events = [e for e in commit.events if e.command_id == command_id] if commit is not None else []
        first = wire.Reply(status=wire.ACCEPTED, command_id=command_id, version=applied.version, events=events)
        return reused(first, events[0].command_digest if events else None, digest)

    # -- refusals --------------------------------------------------------------------------

    def remember(self, replies: Iterable[wire.Reply]) -> None:
        """Answer these refusals from memory from now on (the latest `recent_commands` whole, the others of
        the dedup window by status and version)."""
        replies = list(replies)
        self.recent = self._with_refusals(replies)
        self._note_refused(replies)

    def _note_refused(self, replies: list[wire.Reply], digests: Mapping[str, str] | None = None) -> None:
        settings, refused = self.ports.settings, self.refused
        if refused is None:
            refused = self.refused = RefusedIds()
        refused.note(
            replies, now=time.time(), keep_for=settings.dedup_window, keep_at_most=settings.dedup_max, digests=digests
        )

    def _with_refusals(self, replies: Iterable[wire.Reply]) -> RefusalMemory:
        return (self.recent or RefusalMemory()).adding(replies, keep=self.ports.settings.recent_commands)

    def adopt_refusals(self, recorded: Refusals) -> None:
        """Answer from the record's refusals from now on (but for commands since applied)."""
        applied = self.applied or DedupWindow()
        self.remember(r for r in recorded.replies if r.command_id not in applied)
        self.refusals_revision = recorded.revision

    async def record_refusals(self, refused: list[wire.Reply], digests: Mapping[str, str]) -> str | None:
        """Record the refusals (with the latest before them) before they are given; None once recorded,
        else why not: they are then answered as errors, and the next turn reloads first. `digests`: of
        the refused commands' payloads, by command id, to tell a retry from a reused id.

        The write is a compare-and-set on the record's revision: it fails once another node has
        taken the aggregate over (it writes the record before answering anything), so no refusal
        is given that the new owner would not give again.
        """
        latest = self._with_refusals(refused)
        try:
            if self.refusals_revision is None:
                raise StoreError("the refusal record's revision is unknown")
            self.refusals_revision = await self.ports.refusals.save(
                self.address, list(latest.values()), revision=self.refusals_revision
            )
        except Exception as e:
            logger.warning("refusal not recorded; reloading before the next command", error=repr(e))
            self.refusals_revision, self.stale = None, True
            return f"the command was refused, but the refusal could not be recorded ({e}); retry"
        self.recent = latest
        self._note_refused(refused, digests)
        return None

    # -- snapshots -------------------------------------------------------------------------

    def _maybe_snapshot(self) -> None:
        every = self.ports.settings.snapshot_every
        if every > 0 and self.version - self.snapshot_version >= every and not self.snapshotting:
            self.snapshotting = True
            self.ports.scheduler.spawn(self._write_snapshot())

    async def snapshot_if_moved(self) -> None:
        """Write a snapshot if the aggregate moved on since the last one (and snapshots are on)."""
        moved = self.version > self.snapshot_version
        if self.ports.settings.snapshot_every > 0 and moved and not self.snapshotting:
            self.snapshotting = True
            await self._write_snapshot()

    async def _write_snapshot(self) -> None:
        if self.fingerprint is None:  # a state that cannot be snapshotted: the flag stays up, none is tried again
            return
        if not all(self.codec.knows_in_full(t, s) for t, s in self.holds):
            # Events of a newer minor were read without the fields this code does not know: newer code must
            # not take this state for its own. The history only grows, so the flag stays up here too.
            return
        version, position, ports = self.version, self.position, self.ports
        try:
            now = time.time()
            carried, window_from = (
                self.applied.latest(now=now, keep_for=ports.settings.dedup_window) if self.applied else ([], 0)
            )
            snapshot = Snapshot(
                version=version,
                position=position,
                fingerprint=self.fingerprint,
                state=msgspec.Raw(msgspec.json.encode(self.state)),
                taken_at=now,
                applied=carried,
                window_from=window_from,
                holds=sorted(self.holds),
            )
            await ports.snapshots.save(self.address, snapshot)
            self.snapshot_version = version
            ports.stats.snapshots_written += 1
        except Exception as e:  # a snapshot is an optimisation: log and go on
            logger.warning("snapshot not written", error=repr(e), version=version)
        finally:
            self.snapshotting = False
