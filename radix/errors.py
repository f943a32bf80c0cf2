"""The one error tree of Radix.

Every error Radix raises derives from `RadixError`. Errors also derive from the
built-in they resemble (`ValueError` for bad input, `TimeoutError` for time-outs),
so callers can catch by area or by kind. Each carries its data as attributes and
says what happened and what to do about it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from radix.wire import Reply

__all__ = [
    "CommandConflictError",
    "CommandError",
    "CommandFailedError",
    "CommandRejectedError",
    "CommandTimeoutError",
    "CommitTooLargeError",
    "CorruptCommitError",
    "DecodeError",
    "DomainError",
    "InvalidNameError",
    "NatsServerError",
    "RadixError",
    "StoreError",
    "StoreUnavailableError",
    "UnknownTypeError",
    "VersionConflictError",
]


class RadixError(Exception):
    """The root of every error Radix raises."""


class InvalidNameError(RadixError, ValueError):
    """A namespace, context, aggregate type or aggregate id is not a valid name."""

    def __init__(self, kind: str, value: object, rule: str) -> None:
        self.kind = kind
        self.value = value
        self.rule = rule
        super().__init__(f"invalid {kind} {value!r}: {rule}")


class DecodeError(RadixError, ValueError):
    """A payload could not be decoded: it is malformed or does not match its type."""


class UnknownTypeError(DecodeError):
    """A payload names a command or event type that the context does not define."""

    def __init__(self, message: str, *, type_name: str, expected: tuple[str, ...]) -> None:
        self.type_name = type_name
        self.expected = expected
        super().__init__(message)


class DomainError(RadixError):
    """Raised by an aggregate's `decide` to reject a command; the message is the reason."""

    @property
    def reason(self) -> str:
        return str(self)


class VersionConflictError(RadixError):
    """An append expected a version that is no longer the aggregate's current version.

    Someone else appended first. Reload the aggregate's events after `expected`
    and decide again on the current state.
    """

    def __init__(self, aggregate: str, *, expected: int, actual: int) -> None:
        self.aggregate = aggregate
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"version conflict on {aggregate}: expected version {expected}, but it is at {actual}; "
            "reload its events and decide again"
        )


class StoreError(RadixError):
    """The event store failed to read or write."""


class CommitTooLargeError(StoreError, ValueError):
    """A commit is larger than the server accepts in one message; nothing was written."""

    def __init__(self, aggregate: str, *, size: int, limit: int) -> None:
        self.aggregate = aggregate
        self.size = size
        self.limit = limit
        super().__init__(
            f"commit to {aggregate} is {size} bytes, over the server's max_payload of {limit} bytes; "
            "nothing was written: emit smaller events or raise max_payload on the server"
        )


class CorruptCommitError(StoreError):
    """A stored message on an aggregate's subject is not a valid Radix commit."""

    def __init__(self, subject: str, sequence: int, problem: str) -> None:
        self.subject = subject
        self.sequence = sequence
        self.problem = problem
        super().__init__(
            f"message {sequence} on {subject} is not a valid Radix commit ({problem}); "
            "something other than Radix wrote to this subject"
        )


class StoreUnavailableError(StoreError, TimeoutError):
    """JetStream did not answer in time, after retries; the operation may or may not have applied."""


class NatsServerError(RadixError):
    """The embedded nats-server could not be found, started or stopped."""


class CommandError(RadixError):
    """A command was not accepted; the node's reply says why (`reply.reason`)."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.command_id = reply.command_id
        self.reason = reply.reason or reply.status
        self.version = reply.version
        super().__init__(f"command {reply.command_id} {reply.status}: {self.reason}")


class CommandRejectedError(CommandError):
    """The aggregate's rules rejected the command (`decide` raised `DomainError`)."""


class CommandConflictError(CommandError):
    """Events committed after the version the issuer saw conflict with the command.

    `conflicts` holds those events: the first of them, as many as fit in one message, and
    `conflicts_omitted` counts the ones after them (read them from the aggregate's events).
    Look at the current state and decide again.
    """

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply)
        self.conflicts = tuple(reply.conflicts)
        self.conflicts_omitted = reply.conflicts_omitted


class CommandFailedError(CommandError):
    """The node answered `error`: bad input, a failure in user code, or an unavailable store."""


class CommandTimeoutError(RadixError, TimeoutError):
    """No node answered in time, after retries; the command may or may not have been applied.

    Send it again with the same command id: it is applied at most once.
    """

    def __init__(self, command_id: str, subject: str, timeout: float) -> None:
        self.command_id = command_id
        self.subject = subject
        self.timeout = timeout
        super().__init__(
            f"no reply to command {command_id} on {subject} within {timeout}s; it may or may not have been "
            "applied: send it again with the same command id"
        )
