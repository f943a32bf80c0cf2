"""The bodies of the wire contract: stored commits, replies and command-log entries, as JSON.

These shapes are a public API (see docs/protocol.md and docs/storage.md): any NATS
client can read a stored commit or send a command. Extend them; do not change them.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Final, Literal

import msgspec

__all__ = [
    "ACCEPTED",
    "CONFLICT",
    "ERROR",
    "OK",
    "REJECTED",
    "CommitBody",
    "LogEntry",
    "RecordedEvent",
    "Reply",
    "StateReply",
    "Status",
    "commit_decoder",
    "commit_encoder",
    "entries_in",
    "log_decoder",
    "log_list_encoder",
    "reply_decoder",
    "reply_encoder",
    "state_decoder",
    "timestamp",
]


class RecordedEvent(msgspec.Struct, frozen=True, omit_defaults=True, gc=False):
    """One stored event: its type, schema, version in the aggregate, data, and what caused it.

    Not tracked by the garbage collector (`gc=False`): it holds only strings, numbers and bytes, so it
    can be in no reference cycle, and live actors keep many (their latest events).
    """

    type: str
    schema: str
    version: int
    data: msgspec.Raw
    command_id: str
    correlation_id: str | None = None
    issuer: str | None = None
    command_digest: str | None = None
    """On the first event of each command: a digest of the command's payload, so that its id sent again
    with another body is told apart from a retry (`radix.runtime.dedup.command_digest`)."""


class CommitBody(msgspec.Struct, frozen=True, omit_defaults=True):
    """The body of one stored commit: its events, in order, and the command-log entries of the commands
    that decided them (docs/protocol.md, "The command log").

    `log` is kept as the JSON it was stored as, a list of `LogEntry` (`entries_in` reads it): a replay
    then skips it at the cost of a copy. Left out of a commit no command wrote (an import through the
    store's `append`).
    """

    events: list[RecordedEvent]
    log: msgspec.Raw = msgspec.Raw(b"[]")


commit_encoder: Final = msgspec.json.Encoder()
commit_decoder: Final = msgspec.json.Decoder(CommitBody)


Status = Literal["accepted", "rejected", "conflict", "error"]
ACCEPTED: Final = "accepted"
REJECTED: Final = "rejected"
CONFLICT: Final = "conflict"
ERROR: Final = "error"


class Reply(msgspec.Struct, frozen=True, omit_defaults=True):
    """The answer to a command.

    `accepted`: the command's events are committed and `version` is the aggregate's
    version after them. `rejected`: the domain said no (`reason`). `conflict`: events
    committed after `expected_version` conflict with it (`conflicts`: the first of them,
    as many as fit in a message; `conflicts_omitted`: how many more follow them). `error`:
    bad input or a failure (`reason` says which, and whether to retry).
    """

    status: Status
    command_id: str
    version: int | None = None
    events: list[RecordedEvent] = []
    reason: str | None = None
    conflicts: list[RecordedEvent] = []
    conflicts_omitted: int = 0


class LogEntry(msgspec.Struct, frozen=True, omit_defaults=True, gc=False):
    """One command-log entry: what happened to a command, whatever the outcome."""

    command_id: str
    type: str | None
    status: Status
    reason: str | None
    issuer: str | None
    correlation_id: str | None
    expected_version: int | None
    version: int | None
    node: str
    at: str
    aggregate: str | None = None
    duplicate: bool = False
    causation_id: str | None = None
    """The event a reaction sent the command for (`{ctx}/{Type}/{id}@{version}`), if one did."""


#: The status of a read that was answered with the aggregate's state.
OK: Final = "ok"


class StateReply(msgspec.Struct, frozen=True, omit_defaults=True):
    """The answer to a read (docs/protocol.md, "Reading an aggregate"): `ok` with the aggregate's
    `version` (0: no events yet) and its `state` as the aggregate shows it, or `error` with a `reason`."""

    status: Literal["ok", "error"]
    version: int | None = None
    state: msgspec.Raw = msgspec.Raw(b"null")  # JSON null: left out of an error
    reason: str | None = None


state_decoder: Final = msgspec.json.Decoder(StateReply)
reply_encoder: Final = msgspec.json.Encoder()
reply_decoder: Final = msgspec.json.Decoder(Reply)
log_decoder: Final = msgspec.json.Decoder(LogEntry)
log_list_encoder: Final = msgspec.json.Encoder()
_log_list_decoder: Final = msgspec.json.Decoder(list[LogEntry])


def entries_in(commit: CommitBody) -> list[LogEntry]:
    """The command-log entries a stored commit carries: one per command it accepted, in order."""
    return _log_list_decoder.decode(commit.log)


class _Second:
    """The date and time of the current second, formatted once a second (a log entry per command)."""

    at = -1
    text = ""


def timestamp() -> str:
    """The current time as it appears on the wire: ISO 8601 in UTC, to the microsecond."""
    now = time.time()
    second = int(now)
    if second != _Second.at:
        _Second.text, _Second.at = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S"), second
    return f"{_Second.text}.{int((now - second) * 1_000_000):06d}+00:00"
