"""One turn of an actor: a batch of commands through the command algorithm (docs/commands.md, section 3).

Known command ids are answered with their first outcome; the rest are decided in turn
(`algorithm.decide`, pure) and their events appended as one fenced commit. A refused
append means someone else wrote: the actor reloads, checks that the lease is still its own
(else it steps down: `SupersededError`), answers what the reloaded history already holds
as duplicates and decides the rest again, never on the old state. Refusals are recorded
before they are given, then every command is answered.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import msgspec

from radix import wire
from radix.errors import CommitTooLargeError, RadixError, StoreError, UnreadableEventError, VersionConflictError
from radix.observability.logs import logger, on_command
from radix.runtime import algorithm
from radix.runtime.answers import entry_of
from radix.runtime.dedup import command_digest
from radix.runtime.mailbox import Envelope
from radix.store.commit import Writer
from radix.store.refusals import fitted

if TYPE_CHECKING:  # annotations only: the actor module imports this one
    from radix.runtime.actor import AggregateActor
    from radix.runtime.history import ActorHistory

__all__ = ["SupersededError", "UnservableError", "read", "take"]


class SupersededError(RadixError):
    """The actor's lease is no longer its own: `node` holds it now ('' if nobody, or unknown)."""

    def __init__(self, node: str) -> None:
        super().__init__(f"the aggregate is owned by {node or 'nobody'} now")
        self.node = node


class UnservableError(RadixError):
    """The aggregate's history holds events this node's code cannot read: it must not decide or write
    anything for it. `reason` (what every command is answered with) says what code to deploy."""

    def __init__(
        self, address: object, unreadable: UnreadableEventError, unanswered: Sequence[Envelope] | None = None
    ) -> None:
        self.unanswered = unanswered
        """The commands of the turn still to be answered (None: all of them); the others were answered already."""
        self.reason = (
            f"{address} cannot be served by this node: {unreadable}; until then its commands are refused "
            "and nothing is written to it"
        )
        super().__init__(self.reason)


async def take(actor: AggregateActor, batch: list[Envelope]) -> None:
    """Answer every command of `batch`: known ids with their first outcome, the others once decided and
    written. Raises `SupersededError` (answering nothing) if the aggregate is owned elsewhere now."""
    history, answers, address = actor.history, actor.ports.answers, actor.address
    with on_command(batch[0].command_id, len(batch)):
        fresh: list[Envelope] = []
        applied, recent, refused_before = history.applied, history.recent, history.refused
        for envelope in batch:
            command_id = envelope.command_id
            seen = (
                (applied and command_id in applied)
                or (recent and command_id in recent)
                or (refused_before and command_id in refused_before)
            )
            known = await history.known(command_id, command_digest(envelope.payload)) if seen else None
            if known is not None:
                await answers.answer(address, envelope, known, True)
            else:
                fresh.append(envelope)
        if not fresh:
            return
        try:
            replies = await _handle(actor, fresh)
        except SupersededError:
            raise
        except UnreadableEventError as e:
            raise UnservableError(address, e, fresh) from e
        except Exception as e:  # never let one command kill the actor
            logger.exception("command failed")
            history.stale = True
            replies = [algorithm.error(env.command_id, f"internal error: {e!r}; retry") for env in fresh]
        # Refusals are cut to their share of the record before they are recorded, and given as recorded.
        budget = actor.ports.settings.refusal_bytes
        refused = {r.command_id: fitted(r, budget) for r in replies if r.status in (wire.REJECTED, wire.CONFLICT)}
        if refused:
            digests = {env.command_id: command_digest(env.payload) for env in fresh if env.command_id in refused}
            why = await history.record_refusals(list(refused.values()), digests)
            given = refused if why is None else {cid: algorithm.error(cid, why) for cid in refused}
            replies = [given.get(r.command_id, r) for r in replies]
        answered: set[str] = set()
        for envelope, reply in zip(fresh, replies, strict=True):
            await answers.answer(address, envelope, reply, envelope.command_id in answered)
            answered.add(envelope.command_id)


async def read(actor: AggregateActor, envelope: Envelope) -> None:
    """Answer a read with the aggregate's version and state, after the commands queued before it.

    Nothing is written, so no fence vouches for the state: as for a refusal, the stream's head is
    checked first, and the actor reloads (stepping down if the aggregate is owned elsewhere now) if
    others wrote, or if its last write or read failed."""
    history = actor.history
    with on_command(envelope.command_id, 1):
        try:
            if history.stale or await actor.ports.events.head(actor.address) != history.position:
                await _reload(actor)
        except SupersededError:
            raise
        except UnreadableEventError as e:
            raise UnservableError(actor.address, e) from e
        except Exception as e:
            logger.warning("read failed", error=repr(e))
            history.stale = True
            reply = wire.StateReply(status=wire.ERROR, reason=f"the aggregate could not be read: {e}; retry")
        else:
            reply = _shown(history)
    await actor.ports.answers.state(envelope.reply_to, reply)


def _shown(history: ActorHistory) -> wire.StateReply:
    """The aggregate's version and state as it shows it; an error if `show` fails or gives no JSON value."""
    try:
        shown = msgspec.json.encode(history.codec.aggregate.show(history.state))
    except Exception as e:
        reason = f"the state of {history.codec.type_name} cannot be shown as JSON ({e!r}): see its `show`"
        return wire.StateReply(status=wire.ERROR, reason=reason)
    return wire.StateReply(status=wire.OK, version=history.version, state=msgspec.Raw(shown))


async def _handle(actor: AggregateActor, batch: list[Envelope]) -> list[wire.Reply]:
    """Decide every command of the batch in turn, append all their events as one fenced commit.

    After a refused append the actor reloads, and the reloaded history may already hold some
    of the batch (a former owner wrote them): those are answered as duplicates, never applied
    again; the rest are decided afresh.
    """
    history, ports = actor.history, actor.ports
    settled: dict[str, wire.Reply] = {}
    todo = batch
    if history.stale:
        # A failed write or read: it may have landed, others may have written (and taken over)
        # meanwhile. What the reloaded history holds is answered from it, not decided again.
        todo = await _reload_and_settle(actor, todo, settled)
    for _ in range(ports.settings.retries + 1):
        if not todo:
            return algorithm.in_order(batch, todo, [], settled)
        oldest = min((e.expected_version for e in todo if e.expected_version is not None), default=history.version)
        decision = algorithm.decide(
            history.codec, history.state, history.version, todo, await history.stored_after(oldest)
        )
        for failure in decision.failures:
            logger.error(failure.what, command_id=failure.command_id, exc_info=failure.exception)
        if not decision.events:
            # Nothing to write, so no fence vouches for the state these refusals were decided on:
            # make sure it is the stored state (a read may have come from a lagging replica).
            if await ports.events.head(actor.address) == history.position:
                return algorithm.in_order(batch, todo, decision.replies, settled)
            todo = await _reload_and_settle(actor, todo, settled)
            continue
        first = decision.causes[0]
        writer = Writer(ports.node_id, actor.epoch)
        try:
            commit = await ports.events.append(
                actor.address,
                decision.events,
                expected_version=history.version,
                command_id=first.command_id,
                correlation_id=first.correlation_id,
                issuer=first.issuer,
                causes=decision.causes,
                writer=writer,
                log=_logged(todo, decision, ports.node_id),
            )
        except VersionConflictError:
            # Someone else appended: never retry on the old state. Reload, and step down if the lease
            # moved (the new owner handles the commands); else decide again.
            ports.stats.fenced += 1
            logger.info("version conflict on append; reloading", expected=history.version)
            todo = await _reload_and_settle(actor, todo, settled)
            continue
        except CommitTooLargeError as e:
            if len(todo) > 1:  # together too large: write them one by one
                one_by_one = [reply for env in todo for reply in await _handle(actor, [env])]
                return algorithm.in_order(batch, todo, one_by_one, settled)
            return algorithm.in_order(batch, todo, [algorithm.error(env.command_id, str(e)) for env in todo], settled)
        except StoreError as e:
            history.stale = True
            return algorithm.in_order(batch, todo, [algorithm.error(env.command_id, str(e)) for env in todo], settled)
        mine = (
            commit.writer == writer
            and commit.first_version == history.version + 1
            and commit.version == history.version + len(decision.events)
            and commit.command_id == first.command_id
        )
        if not mine:
            # The store answered with a commit this actor did not just write: a command of the batch was
            # stored before (by a former owner, or an earlier attempt). Take history as it is, make sure
            # the aggregate is still ours, answer what is stored, decide the rest.
            todo = await _reload_and_settle(actor, todo, settled)
            continue
        history.committed(commit, decision.state)
        return algorithm.in_order(batch, todo, algorithm.accepted(decision.replies, commit), settled)
    if not todo:
        return algorithm.in_order(batch, todo, [], settled)
    attempts = ports.settings.retries + 1
    gave_up = f"gave up after {attempts} version conflicts: the aggregate is being written elsewhere; retry"
    return algorithm.in_order(batch, todo, [algorithm.error(env.command_id, gave_up) for env in todo], settled)


def _logged(batch: Sequence[Envelope], decision: algorithm.Decision, node: str) -> list[wire.LogEntry]:
    """The log entries the commit carries: one per command of `batch` it holds events of (a command sent
    twice in the batch is answered again as a duplicate, and logged as one by `answers.Replies`)."""
    caused = {cause.command_id for cause in decision.causes}
    entries = []
    for envelope, reply in zip(batch, decision.replies, strict=True):
        if reply.command_id in caused:
            caused.discard(reply.command_id)
            entries.append(entry_of(envelope, reply, node=node, duplicate=False))
    return entries


async def _reload_and_settle(
    actor: AggregateActor, todo: list[Envelope], settled: dict[str, wire.Reply]
) -> list[Envelope]:
    """Reload (stepping down if the aggregate is owned elsewhere); answer the commands the reloaded
    history holds as duplicates (into `settled`), and return those still to decide."""
    await _reload(actor)
    history = actor.history
    for envelope in todo:
        if history.applied and envelope.command_id in history.applied and envelope.command_id not in settled:
            digest = command_digest(envelope.payload)
            settled[envelope.command_id] = await history.applied_reply(envelope.command_id, digest)
    return [e for e in todo if e.command_id not in settled]


async def _reload(actor: AggregateActor) -> None:
    """Catch up with the stream, then make sure the lease is still the actor's; `SupersededError` if not.

    In that order: once the lease (read from its leader) still names the actor after the tail
    was read, a takeover can only come later, and the new owner's first write fences the
    actor's next append. Checked the other way round, a takeover and its write could slip in
    between, and the actor would write after them under its old epoch.
    """
    history = actor.history
    try:
        await history.catch_up()
    except UnreadableEventError:
        # Written by newer code: if that code's node owns the aggregate now, hand on to it.
        history.stale = True
        await _step_down_if_superseded(actor)
        raise
    await _step_down_if_superseded(actor)


async def _step_down_if_superseded(actor: AggregateActor) -> None:
    history, ports = actor.history, actor.ports
    try:
        if history.refusals_revision is None:  # read before the lease: a takeover after it fences it
            history.adopt_refusals(await ports.refusals.load(actor.address))
        holder = await ports.leases.holder(actor)
    except Exception as e:
        logger.warning("ownership could not be confirmed: stepping down", error=repr(e))
        raise SupersededError("") from None
    if holder is not None:
        logger.warning("the aggregate is owned elsewhere now: stepping down", owner=holder)
        raise SupersededError(holder)
