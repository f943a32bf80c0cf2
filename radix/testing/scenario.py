"""Given/when/then for one aggregate type, through Radix's own command algorithm, with no runtime at all.

    scenario(Account()).given(Opened(owner="ann"), Deposited(amount=10)).when(Withdraw(amount=25)).then_rejected(
        "cannot withdraw"
    )

`given` events are stored and read back as a node would (encoded to JSON and decoded), and
evolved into the state; `when` sends the command through its JSON form and decides it with
the true-conflict check (`expected_version`); `then...` says what must have come of it, and a
mismatch is a `ScenarioError` (an `AssertionError`) that says what came instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from radix import wire
from radix.domain import Aggregate, AggregateCodec, Command, Event, encode_command
from radix.errors import RadixError
from radix.runtime import algorithm
from radix.runtime.mailbox import Envelope

__all__ = ["Outcome", "Scenario", "ScenarioError", "scenario"]


class ScenarioError(RadixError, AssertionError):
    """What a command came to is not what the scenario says."""


def scenario(aggregate: Aggregate[Any, Any, Any]) -> Scenario:
    """A scenario of one aggregate type, from no events."""
    return Scenario(AggregateCodec(aggregate, {}), ())


def _recorded(codec: AggregateCodec, event: Event, version: int) -> wire.RecordedEvent:
    data = codec.encode_event(event)
    return wire.RecordedEvent(type=data.type, schema=data.schema, version=version, data=data.data, command_id="given")


@dataclass(frozen=True)
class Scenario:
    """An aggregate's history so far; `when` decides a command on it."""

    codec: AggregateCodec
    history: tuple[wire.RecordedEvent, ...]

    def given(self, *events: Event) -> Scenario:
        """This scenario with `events` committed after what it already holds."""
        start = len(self.history)
        added = tuple(_recorded(self.codec, e, start + i) for i, e in enumerate(events, start=1))
        return Scenario(self.codec, self.history + added)

    @property
    def state(self) -> Any:
        """The state the history evolves to (each event read back as stored)."""
        aggregate = self.codec.aggregate
        state = aggregate.initial_state()
        for recorded in self.history:
            state = aggregate.evolve(state, self.codec.decode_event(recorded.type, recorded.schema, recorded.data))
        return state

    def when(self, command: Command, *, expected_version: int | None = None) -> Outcome:
        """Decide `command` (sent as JSON) on the history; `expected_version` is the version its issuer saw."""
        codec = self.codec
        decoded = codec.decode_command(encode_command(command))
        if decoded != command:
            raise ScenarioError(f"{command!r} does not survive its JSON form: it reads back as {decoded!r}")
        envelope = Envelope(
            command=decoded,
            type_name=type(decoded).__name__,
            command_id="when",
            expected_version=expected_version,
            issuer=None,
            correlation_id=None,
            reply_to=None,
            subject="",
            payload=b"",
            headers={},
        )
        version = len(self.history)
        decision = algorithm.decide(codec, self.state, version, [envelope], self.history)
        if decision.failures:
            failure = decision.failures[0]
            raise ScenarioError(f"{failure.what}: {failure.exception!r}") from failure.exception
        (reply,) = decision.replies
        events = tuple(codec.decode_event(e.type, e.schema, e.data) for e in decision.events)
        state = decision.state if reply.status == wire.ACCEPTED else self.state
        return Outcome(codec, command, reply, events, state)


@dataclass(frozen=True)
class Outcome:
    """What a command came to: its reply, the events it decided, and the state after them."""

    codec: AggregateCodec
    command: Command
    reply: wire.Reply
    events: tuple[Event, ...]
    state: Any

    def _came_to(self) -> str:
        if self.reply.status == wire.ACCEPTED:
            return f"it was accepted with {list(self.events)!r}"
        return f"it was {self.reply.status}: {self.reply.reason}"

    def then(self, *events: Event) -> Outcome:
        """The command was accepted and decided exactly `events` (none: accepted, and changed nothing)."""
        if self.reply.status != wire.ACCEPTED or self.events != events:
            raise ScenarioError(f"{self.command!r} should have given {list(events)!r}, but {self._came_to()}")
        return self

    def then_rejected(self, reason: str | None = None) -> Outcome:
        """The aggregate rejected the command (`DomainError`), with a reason holding `reason` if given."""
        return self._refused(wire.REJECTED, reason)

    def then_conflict(self, reason: str | None = None) -> Outcome:
        """The command conflicted with events after its `expected_version`, with a reason holding `reason`."""
        return self._refused(wire.CONFLICT, reason)

    def _refused(self, status: str, reason: str | None) -> Outcome:
        if self.reply.status != status or (reason is not None and reason not in (self.reply.reason or "")):
            wanted = status if reason is None else f"{status} with a reason holding {reason!r}"
            raise ScenarioError(f"{self.command!r} should have been {wanted}, but {self._came_to()}")
        return self

    def then_state(self, state: Any) -> Outcome:
        """The aggregate's state after the command is `state`."""
        if self.state != state:
            raise ScenarioError(f"after {self.command!r} the state should be {state!r}, but it is {self.state!r}")
        return self

    @property
    def conflicts(self) -> Sequence[Event]:
        """The concurrent events a conflict names."""
        return [self.codec.decode_event(e.type, e.schema, e.data) for e in self.reply.conflicts]
