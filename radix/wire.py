"""The wire contract: header names and the JSON envelopes Radix writes and reads.

These shapes are a public API (see docs/protocol.md and docs/storage.md): any NATS
client can read a stored commit or send a command. Extend them; do not change them.
"""

from __future__ import annotations

from typing import Final

import msgspec

__all__ = [
    "CONTENT_TYPE",
    "H_COMMAND_ID",
    "H_CONTENT_TYPE",
    "H_CORRELATION_ID",
    "H_EXPECTED_LAST_SUBJECT_SEQ",
    "H_EXPECTED_VERSION",
    "H_FIRST_VERSION",
    "H_ISSUER",
    "H_MSG_ID",
    "H_VERSION",
    "CommitBody",
    "RecordedEvent",
]

# Radix headers.
H_COMMAND_ID: Final = "Radix-Command-Id"
H_CORRELATION_ID: Final = "Radix-Correlation-Id"
H_ISSUER: Final = "Radix-Issuer"
H_EXPECTED_VERSION: Final = "Radix-Expected-Version"
H_FIRST_VERSION: Final = "Radix-First-Version"
H_VERSION: Final = "Radix-Version"
H_CONTENT_TYPE: Final = "Content-Type"
CONTENT_TYPE: Final = "application/json"

# NATS JetStream headers.
H_MSG_ID: Final = "Nats-Msg-Id"
H_EXPECTED_LAST_SUBJECT_SEQ: Final = "Nats-Expected-Last-Subject-Sequence"


class RecordedEvent(msgspec.Struct, frozen=True, omit_defaults=True):
    """One stored event: its type, schema, version in the aggregate, data, and what caused it."""

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
