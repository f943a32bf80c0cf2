"""The one error tree of Radix.

Every error Radix raises derives from `RadixError`. Errors also derive from the
built-in they resemble (`ValueError` for bad input, `TypeError` for a wrong definition,
`TimeoutError` for time-outs), so callers can catch by area or by kind. Each carries its
data as attributes and says what happened and what to do about it; one raised because
of another keeps it as `__cause__`.

This module imports nothing of Radix at run time: every other module may raise from it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: the wire contract imports this module, not the other way round
    from collections.abc import Sequence

    from radix.wire import Reply

__all__ = [
    "CheckpointMovedError",
    "CommandConflictError",
    "CommandError",
    "CommandFailedError",
    "CommandRejectedError",
    "CommandTimeoutError",
    "CommitTooLargeError",
    "ConfigError",
    "CorruptCommitError",
    "DecodeError",
    "DefinitionError",
    "DomainError",
    "InvalidArgumentError",
    "InvalidEventError",
    "InvalidNameError",
    "KeyChangedError",
    "LeaseHeldError",
    "LivenessLostError",
    "NatsAuthorizationError",
    "NatsConnectionError",
    "NatsServerError",
    "NatsTlsError",
    "NatsUnreachableError",
    "RadixError",
    "ReadError",
    "ReadTimeoutError",
    "SchemaError",
    "StoreError",
    "StoreUnavailableError",
    "UnknownTypeError",
    "UnreadableEventError",
    "VersionConflictError",
    "require",
]


class RadixError(Exception):
    """The root of every error Radix raises."""


class ConfigError(RadixError, ValueError):
    """A configuration value is out of its range; `field` names it (as `part.field`)."""

    def __init__(self, field: str, value: object, rule: str) -> None:
        self.field = field
        self.value = value
        self.rule = rule
        super().__init__(f"{field} = {value!r}: {rule}")


def require(ok: bool, field: str, value: object, rule: str) -> None:
    """The check of one configuration field: `ConfigError(field, value, rule)` unless `ok`."""
    if not ok:
        raise ConfigError(field, value, rule)


class InvalidArgumentError(RadixError, ValueError):
    """A call was given an argument it cannot take (a negative version, an empty commit, an unsendable header)."""


class DefinitionError(RadixError, TypeError):
    """A bounded context is defined wrongly: an aggregate's types, a duplicate name, a command of another context."""


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


class UnreadableEventError(DecodeError):
    """A stored event this code cannot read: its type is unknown here, its major version is newer than
    this code's, or an older major has no upcaster to the next. `deploy` says what code would read it.

    Nothing is wrong with the stored event: deploy code that reads it (or declare the missing upcaster).
    """

    def __init__(self, what: str, *, type_name: str, schema: str, deploy: str) -> None:
        self.what = what
        self.type_name = type_name
        self.schema = schema
        self.deploy = deploy
        super().__init__(f"{what}: deploy code that {deploy}")


class InvalidEventError(DecodeError):
    """An event that `decide` returned does not fit its type's declared shape (a field holds a value of
    another type): it is refused before anything is written."""


class SchemaError(RadixError):
    """This code's event schemas disagree with the namespace's schema registry; `problems` says how.

    A version, once registered, keeps its shape: raise the minor for a compatible change (new fields
    with defaults), the major for any other (and declare an upcaster from the old major).
    """

    def __init__(self, message: str, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
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


class KeyChangedError(RadixError):
    """A create or compare-and-set of a key-value entry found it at another revision than expected.

    Someone else wrote the key first: read it again and decide on what it holds now.
    """

    def __init__(self, key: str, revision: int) -> None:
        self.key = key
        self.revision = revision
        super().__init__(f"{key} is at revision {revision}: read it again")


class LeaseHeldError(RadixError):
    """An aggregate's lease is held by another live node: send its commands there."""

    def __init__(self, key: str, *, node: str, incarnation: str, revision: int) -> None:
        self.key = key
        self.node = node
        self.incarnation = incarnation
        self.revision = revision
        super().__init__(f"the lease {key} is held by {node} (incarnation {incarnation})")


class LivenessLostError(RadixError):
    """This node's liveness key expired or was replaced: others may have taken its aggregates over."""


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


class CheckpointMovedError(StoreError):
    """A projection's checkpoint (or a retried parked event's marker) was written by another writer since
    this one read it: a reader that lost its partition and still runs, or a reset. The reader ends and
    the partition's owner reads on from what the view holds; a `ViewStore` of one's own raises it too."""


class StoreUnavailableError(StoreError, TimeoutError):
    """JetStream did not answer in time, after retries; the operation may or may not have applied."""


class NatsServerError(RadixError):
    """The embedded nats-server could not be found, started or stopped."""


class NatsConnectionError(RadixError):
    """The first connection to NATS could not be made; the message says why and what to check."""


class NatsUnreachableError(NatsConnectionError, ConnectionError):
    """No server of `servers` could be reached in time; `reason` is what the last attempt met."""

    def __init__(self, message: str, *, servers: tuple[str, ...], reason: str) -> None:
        self.servers = servers
        self.reason = reason
        super().__init__(message)


class NatsAuthorizationError(NatsConnectionError, PermissionError):
    """The server refused the credentials given (or the lack of them): trying again will not help."""


class NatsTlsError(NatsConnectionError):
    """The TLS handshake with the server failed: check the CA and the certificates."""


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

    `conflicts` holds those events, decoded (`records`: as stored, with their versions): the first
    of them, as many as fit in one message, and `conflicts_omitted` counts the ones after them
    (read them from the aggregate's events). Look at the current state and decide again.
    """

    def __init__(self, reply: Reply, conflicts: Sequence[object]) -> None:
        super().__init__(reply)
        self.conflicts = tuple(conflicts)
        self.records = tuple(reply.conflicts)
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


class ReadError(RadixError):
    """A read of an aggregate's state was answered with an error; `reason` says why."""

    def __init__(self, subject: str, reason: str) -> None:
        self.subject = subject
        self.reason = reason
        super().__init__(f"reading {subject} failed: {reason}")


class ReadTimeoutError(ReadError, TimeoutError):
    """No node answered a read in time, after retries; reading again is safe."""

    def __init__(self, subject: str, timeout: float) -> None:
        super().__init__(subject, f"no reply within {timeout}s: retry, and check that a node hosts the context")
