"""The aggregate actor: one per live aggregate, one command at a time.

It activates from the latest snapshot and the events after it (`ActorHistory`), then
takes what its mailbox holds in turn: batches of commands (each batch a turn of the
command algorithm, runtime/turn.py), and control requests (move, passivate, stop). An
actor runs as a task only while its mailbox holds something; then it parks, as plain
state with no task, until the next item is posted (a node holds a hundred thousand of
them). How it ended (`Ending`) tells its node what to do with its lease and with what it
had queued.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Sequence

from radix import wire
from radix.domain import AggregateCodec
from radix.errors import LeaseHeldError, UnreadableEventError
from radix.observability.logs import in_actor, logger
from radix.runtime import turn
from radix.runtime.history import ActorHistory
from radix.runtime.mailbox import READ, STOP, Envelope, Item, Mailbox, Move, Passivate, Prepare
from radix.runtime.ports import ActorPorts
from radix.wire.names import Address

__all__ = ["AggregateActor", "Ending"]


class Ending(enum.Enum):
    """How an actor ended, which says what becomes of its shard's lease and of what it had queued."""

    IDLE = "idle"
    """Passivated after `idle_timeout`: the shard's lease stays with the node."""
    STOPPED = "stopped"
    """Asked to stop (shutdown, memory limit): the shard's lease stays (a stopping node releases its shards
    once every actor has ended)."""
    FAILED = "failed"
    """It could not be loaded, or its history holds events this code cannot read: queued commands were
    answered `error`; the shard's lease stays."""
    UNLEASED = "unleased"
    """Its lease could not be settled: queued commands were answered `error`; no lease was taken."""
    MOVED = "moved"
    """Its shard was handed over to `hand_to`: what queued is forwarded there."""
    LOST = "lost"
    """Another node took the shard (its append was fenced): what queued goes to `hand_to`, else routed afresh."""
    ELSEWHERE = "elsewhere"
    """Another live node held the shard at activation: what queued is forwarded to `hand_to`."""
    REVOKED = "revoked"
    """Its node lost liveness: nothing more is written; what queued is routed afresh."""


class AggregateActor:
    """The live instance of one aggregate on a node."""

    # Slots: a node may hold a hundred thousand idle actors.
    __slots__ = (
        "activated",
        "busy",
        "ending",
        "epoch",
        "finished",
        "hand_to",
        "held",
        "history",
        "last_active",
        "leftover",
        "mailbox",
        "moving",
        "ports",
        "revoked",
        "running",
    )

    def __init__(self, address: Address, codec: AggregateCodec, fingerprint: str | None, ports: ActorPorts) -> None:
        self.ports = ports
        self.history = ActorHistory(address, codec, fingerprint, ports)
        self.mailbox = Mailbox(ports.settings.mailbox_size)
        self.epoch = 0
        self.revoked = False  # its node lost liveness: hand everything on, write nothing
        self.ending = Ending.STOPPED
        self.hand_to: str | None = None  # where what it had queued goes, for MOVED, LOST and ELSEWHERE
        self.leftover: tuple[Envelope, ...] = ()  # commands taken from the mailbox but not handled
        self.moving = False  # a rebalance asked it to move
        self.held: tuple[Item, ...] = ()  # a control request met while batching: handled next
        self.busy = False  # in a turn
        self.activated = False
        self.running = False  # a task is taking the mailbox; False: parked, or not started yet
        self.finished = False
        self.last_active = time.monotonic()

    @property
    def address(self) -> Address:
        return self.history.address

    @property
    def codec(self) -> AggregateCodec:
        return self.history.codec

    # -- the mailbox -----------------------------------------------------------------------

    def post(self, item: Item) -> None:
        """Queue a command (refused with `MailboxFullError` past the mailbox's limit) or a control request,
        and run the actor if it is parked."""
        self.mailbox.put(item)
        if isinstance(item, Envelope):
            self.last_active = time.monotonic()
        if not self.running and not self.finished:
            self.running = True
            self.ports.scheduler.wake(self)

    async def run(self) -> None:
        """Acquire the lease and activate (the first time), then take what the mailbox holds; park or end."""
        a = self.address
        in_actor(self.ports.node_id, a.namespace, a.context, f"{a.aggregate_type}/{a.aggregate_id}")
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
                self.ports.scheduler.ended(self)
            else:
                self.ports.scheduler.parked(self)

    def take_leftovers(self) -> list[Envelope]:
        """What is left to hand on after the actor ended: the commands it held and the rest of its mailbox."""
        leftovers, self.leftover = list(self.leftover), ()
        while not self.mailbox.empty():
            item = self.mailbox.get_nowait()
            if isinstance(item, Envelope):
                leftovers.append(item)
            elif isinstance(item, Prepare):
                item.done()  # nothing to prepare any more: whoever waits goes on
        return leftovers

    # -- starting --------------------------------------------------------------------------

    async def _start(self) -> bool:
        """Acquire the lease and activate; False (and how it ended) if that failed."""
        ports = self.ports
        try:
            self.epoch, taken_over = await ports.leases.acquire(self)
        except LeaseHeldError as e:
            self.ending, self.hand_to = Ending.ELSEWHERE, e.node
            return False
        except Exception as e:
            logger.error("lease not acquired", error=repr(e), exc_info=e)
            self.ending = Ending.UNLEASED
            await self._fail_queued(f"ownership of the aggregate could not be settled: {e}; retry")
            return False
        try:
            began = time.monotonic()
            await self.history.activate(taken_over)
            ports.stats.activation_seconds.append(time.monotonic() - began)
            logger.debug("activated", epoch=self.epoch, version=self.history.version)
        except UnreadableEventError as e:
            await self._unservable(turn.UnservableError(self.address, e))
            return False
        except Exception as e:
            logger.error("activation failed", error=repr(e), exc_info=e)
            self.ending = Ending.FAILED
            await self._fail_queued(f"the aggregate could not be loaded: {e}; retry later")
            return False
        return True

    async def _unservable(self, unservable: turn.UnservableError, taken: Sequence[Envelope] = ()) -> None:
        """End without writing anything: the history holds events this code cannot read. What was taken
        and what queued is answered with what to deploy."""
        logger.warning("aggregate not servable by this code", reason=unservable.reason)
        self.ending = Ending.FAILED
        await self._fail_queued(unservable.reason, taken)

    async def _fail_queued(self, reason: str, taken: Sequence[Envelope] = ()) -> None:
        """Answer `error` with `reason` to the commands and reads taken, and to what the mailbox holds."""
        answers = self.ports.answers
        queued = [self.mailbox.get_nowait() for _ in range(len(self.mailbox))]
        for envelope in (*taken, *queued):
            if isinstance(envelope, Envelope) and envelope.command is READ:
                await answers.state(envelope.reply_to, wire.StateReply(status=wire.ERROR, reason=reason))
            elif isinstance(envelope, Envelope):
                reply = wire.Reply(status=wire.ERROR, command_id=envelope.command_id, reason=reason)
                await answers.answer(self.address, envelope, reply, False)

    # -- serving ---------------------------------------------------------------------------

    async def _serve(self) -> bool:
        """Handle what the mailbox holds; True if the actor ended, False when it is empty (park)."""
        while True:
            item: Item
            if self.held:
                item, self.held = self.held[0], ()
            elif self.mailbox.empty():
                self.mailbox.release()
                self.history.park()
                return False
            else:
                item = self.mailbox.get_nowait()
            if self.revoked:
                self.ending, self.hand_to = Ending.REVOKED, None
                if isinstance(item, Envelope):
                    self.leftover = (item,)
                return True
            if item is STOP:
                if await self._may_end():
                    self.ending = Ending.STOPPED
                    return True
                continue  # more arrived after the stop request: it no longer applies
            if isinstance(item, Passivate):
                idle = time.monotonic() - self.last_active >= self.ports.settings.idle_timeout
                if idle and await self._may_end():
                    self.ports.stats.passivations += 1
                    self.ending = Ending.IDLE
                    return True
                continue
            if isinstance(item, Move):
                if await self._move(item):
                    return True
                continue
            if isinstance(item, Prepare):
                async with self.ports.scheduler.pace:  # a drain prepares every actor: pace their writes
                    await self.history.snapshot_if_moved()  # while serving: the move's own is then cheap
                item.done()
                continue
            # A read, or a batch of commands: one turn (here, not in a method of its own: every await
            # level is resumed on each reply the turn waits for).
            batch = [item] if item.command is READ else self._batch(item)
            if self.revoked or not await self.ports.leases.confirm_live(self):
                self.ending, self.hand_to = Ending.REVOKED, None
                self.leftover = tuple(batch)
                return True
            self.busy = True
            try:
                await (turn.read(self, item) if item.command is READ else turn.take(self, batch))
            except turn.SupersededError as e:
                self.ending, self.hand_to = Ending.LOST, e.node or None
                self.leftover = tuple(batch)
                return True
            except turn.UnservableError as e:
                await self._unservable(e, batch if e.unanswered is None else e.unanswered)
                return True
            finally:
                self.busy = False

    def _batch(self, first: Envelope) -> list[Envelope]:
        """`first` and the commands queued behind it, up to `group_commit`: decided in turn, written as one commit."""
        batch = [first]
        limit = self.ports.settings.group_commit
        while len(batch) < limit and not self.mailbox.empty():
            item = self.mailbox.get_nowait()
            if not isinstance(item, Envelope) or item.command is READ:
                self.held = (item,)  # a control request or a read: handle it after this batch
                break
            batch.append(item)
        return batch

    # -- ending ----------------------------------------------------------------------------

    async def _may_end(self) -> bool:
        """Snapshot if there is anything new, then say whether the actor may end: nothing came meanwhile.

        The snapshot is written while the actor is still registered, so a command arriving
        meanwhile waits in its mailbox, and the next activation finds the snapshot.
        """
        if self.mailbox.empty():
            async with self.ports.scheduler.pace:  # many actors stop at once on shutdown: pace their writes
                await self.history.snapshot_if_moved()
        return self.mailbox.empty()

    async def _move(self, move: Move) -> bool:
        """Snapshot (if anything changed since the last one), then reach the shard's handover; True (the
        actor ends) unless the marker belongs to no move under way.

        A move that did not happen (given up, refused, or of unknown outcome) ends the actor all the
        same: the lease is read from its leader, and what queued goes to its holder, or is routed afresh
        to a new actor that joins the lease as the node holds it now."""
        await self.history.snapshot_if_moved()  # an unchanged aggregate's last snapshot serves the new owner
        ports = self.ports
        handed = await ports.leases.hand_over(self, move)
        if handed is None:
            return False  # a marker of no move under way for this actor's lease (one given up): serve on
        if handed:
            self.ending, self.hand_to = Ending.MOVED, move.node
            ports.stats.migrations += 1
            ports.stats.pauses.append(time.monotonic() - move.requested)
            return True
        holder = await ports.leases.holder(self)
        self.ending, self.hand_to = (Ending.LOST, holder or None) if holder is not None else (Ending.STOPPED, None)
        return True
