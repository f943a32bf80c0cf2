"""The command algorithm of docs/commands.md, as pure functions: no I/O, no clock, no logging.

`decide` takes the aggregate's state and version, the events committed after the oldest
version the batch's issuers saw, and a batch of commands; it runs the true-conflict check
and `decide` for each command in turn, on the state the earlier ones leave, and returns
one reply per command with the events to write as one commit. The actor (runtime/turn.py)
does the rest: answering known command ids, appending, reloading and retrying.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from radix import wire
from radix.domain import AggregateCodec, Event, EventData
from radix.errors import DomainError, RadixError
from radix.runtime.dedup import command_digest, reused
from radix.runtime.mailbox import Envelope
from radix.store.commit import Cause, Commit

__all__ = ["Decision", "Failure", "accepted", "decide", "error", "in_order"]


@dataclass(frozen=True, slots=True)
class Failure:
    """User code that raised while deciding a command: what failed, and the exception (to log with it)."""

    command_id: str
    what: str
    exception: Exception


@dataclass(slots=True)
class Decision:
    """The outcome of deciding a batch: a reply per command (accepted ones still without their events),
    the events to append as one commit with a cause per event, and the state after them."""

    replies: list[wire.Reply] = field(default_factory=list)
    events: list[EventData] = field(default_factory=list)
    causes: list[Cause] = field(default_factory=list)
    state: Any = None
    failures: list[Failure] = field(default_factory=list)


def error(command_id: str, reason: str) -> wire.Reply:
    """An `error` reply."""
    return wire.Reply(status=wire.ERROR, command_id=command_id, reason=reason)


def decide(
    codec: AggregateCodec, state: Any, version: int, batch: Sequence[Envelope], stored: Sequence[wire.RecordedEvent]
) -> Decision:
    """Run the conflict check and `decide` for each command of `batch` in turn.

    `stored` holds the committed events after the oldest `expected_version` of the batch. A command
    sent twice in one batch has one outcome. A command whose `expected_version` is ahead of the
    aggregate is an error; one behind it is checked with the aggregate's `conflicts` against the
    events since (those committed, and those the batch's earlier commands decided).
    """
    aggregate = codec.aggregate
    decision = Decision(state=state)
    pending: list[wire.RecordedEvent] = []
    decided: dict[str, wire.Reply] = {}
    digests: dict[str, str] = {}
    replies = decision.replies
    for envelope in batch:
        if replies:
            decided.setdefault(replies[-1].command_id, replies[-1])
        command_id, digest = envelope.command_id, command_digest(envelope.payload)
        earlier = decided.get(command_id)
        if earlier is not None:  # the same command twice in one batch: one outcome
            replies.append(reused(earlier, digests[command_id], digest))
            continue
        digests[command_id] = digest
        expected = envelope.expected_version
        if expected is not None and expected > version:
            reason = (
                f"expected_version {expected} is ahead of the aggregate's version {version}; "
                "send the version you last saw"
            )
            replies.append(error(command_id, reason))
            continue
        if expected is not None and expected < version:
            concurrent = [e for e in (*stored, *pending) if e.version > expected]
            events_since = [codec.decode_event(e.type, e.schema, e.data) for e in concurrent]
            conflict = aggregate.conflicts(envelope.command, events_since)
            if conflict is not None:
                replies.append(
                    wire.Reply(
                        status=wire.CONFLICT,
                        command_id=command_id,
                        version=version,
                        reason=conflict,
                        conflicts=concurrent,
                    )
                )
                continue
        try:
            events = list(aggregate.decide(decision.state, envelope.command))
        except DomainError as e:
            replies.append(wire.Reply(status=wire.REJECTED, command_id=command_id, version=version, reason=e.reason))
            continue
        except Exception as e:
            decision.failures.append(Failure(command_id, "decide raised", e))
            replies.append(error(command_id, f"decide raised {e!r}: a bug in the aggregate's code"))
            continue
        try:
            encoded = [codec.encode_event(e) for e in events]
            after = _evolve(codec, decision.state, events)
        except Exception as e:
            decision.failures.append(Failure(command_id, "decide returned events that could not be applied", e))
            what = str(e) if isinstance(e, RadixError) else f"{e!r}: a bug in the aggregate's code"
            refused = f"the events decided could not be applied, and nothing was written: {what}"
            replies.append(error(command_id, refused))
            continue
        cause = Cause(command_id, envelope.correlation_id, envelope.issuer, digest)
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
        decision.events.extend(encoded)
        decision.causes.extend([cause] * len(encoded))
        decision.state, version = after, version + len(encoded)
        replies.append(wire.Reply(status=wire.ACCEPTED, command_id=command_id, version=version))
    return decision


def _evolve(codec: AggregateCodec, state: Any, events: Sequence[Event]) -> Any:
    for event in events:
        state = codec.aggregate.evolve(state, event)
    return state


def accepted(replies: Sequence[wire.Reply], commit: Commit) -> list[wire.Reply]:
    """`replies` with each accepted one given its events and version from the commit that wrote them."""
    by_command: dict[str, list[wire.RecordedEvent]] = {}
    for recorded in commit.events:
        by_command.setdefault(recorded.command_id, []).append(recorded)
    return [
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


def in_order(
    batch: Sequence[Envelope], todo: Sequence[Envelope], replies: Sequence[wire.Reply], settled: dict[str, wire.Reply]
) -> list[wire.Reply]:
    """One reply per command of `batch`: those decided (`todo`, in order), else those settled before."""
    by_id = dict(settled)
    by_id.update((envelope.command_id, reply) for envelope, reply in zip(todo, replies, strict=True))
    return [by_id[envelope.command_id] for envelope in batch]
