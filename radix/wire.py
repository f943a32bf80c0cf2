"""The wire contract: header names and the JSON envelopes Radix writes and reads.

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
    "CONTENT_TYPE",
    "ERROR",
    "H_COMMAND_ID",
    "H_CONTENT_TYPE",
    "H_CORRELATION_ID",
    "H_EPOCH",
    "H_EXPECTED_LAST_SUBJECT_SEQ",
    "H_EXPECTED_VERSION",
    "H_FIRST_VERSION",
    "H_HOPS",
    "H_ISSUER",
    "H_MSG_ID",
    "H_NODE",
    "H_REPLY_TO",
    "H_STATUS",
    "H_SUBJECT",
    "H_VERSION",
    "REJECTED",
    "CommitBody",
    "LogEntry",
    "RecordedEvent",
    "Reply",
    "Status",
    "timestamp",
]

# Radix headers.
H_COMMAND_ID: Final = "Radix-Command-Id"
H_CORRELATION_ID: Final = "Radix-Correlation-Id"
H_ISSUER: Final = "Radix-Issuer"
H_EXPECTED_VERSION: Final = "Radix-Expected-Version"
H_FIRST_VERSION: Final = "Radix-First-Version"
H_VERSION: Final = "Radix-Version"
H_STATUS: Final = "Radix-Status"
H_NODE: Final = "Radix-Node"
H_EPOCH: Final = "Radix-Epoch"
# Node-to-node forwarding.
H_SUBJECT: Final = "Radix-Subject"
H_REPLY_TO: Final = "Radix-Reply-To"
H_HOPS: Final = "Radix-Hops"
H_CONTENT_TYPE: Final = "Content-Type"
CONTENT_TYPE: Final = "application/json"

# NATS JetStream headers.
H_MSG_ID: Final = "Nats-Msg-Id"
H_EXPECTED_LAST_SUBJECT_SEQ: Final = "Nats-Expected-Last-Subject-Sequence"


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


class CommitBody(msgspec.Struct, frozen=True):
    """The body of one stored commit: its events, in order."""

    events: list[RecordedEvent]


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


reply_encoder: Final = msgspec.json.Encoder()
reply_decoder: Final = msgspec.json.Decoder(Reply)
log_decoder: Final = msgspec.json.Decoder(LogEntry)


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
