"""A commit: one command's events as one stored message. Shared by both stores.

Its types are structs rather than frozen dataclasses: several are made per command, and a frozen
dataclass's `__init__` sets each field through `object.__setattr__`.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from radix import wire
from radix.domain import EventData
from radix.errors import CommitTooLargeError, CorruptCommitError, InvalidArgumentError
from radix.transport.publish import encode_headers
from radix.wire.names import Address, event_subject

__all__ = [
    "DEFAULT_MAX_PAYLOAD",
    "Cause",
    "Commit",
    "PreparedCommit",
    "Writer",
    "decode_commit",
    "prepare_commit",
    "writer_of",
]

#: nats-server's default max_payload: the largest message, hence commit, it takes.
DEFAULT_MAX_PAYLOAD = 1024 * 1024

#: The fence header's line at its longest (a sequence of 20 digits), counted in a commit's size before
#: the fence is known.
_FENCE_LINE = len(f"{wire.H_EXPECTED_LAST_SUBJECT_SEQ}: {2**64}\r\n")


class Writer(msgspec.Struct, frozen=True):
    """Who wrote a commit: the node, and the lease epoch under which it owned the aggregate."""

    node: str
    epoch: int


class Commit(msgspec.Struct, frozen=True):
    """One stored commit: the events one command produced, with their stream position and writer."""

    address: Address
    position: int
    events: tuple[wire.RecordedEvent, ...]
    writer: Writer | None = None

    @property
    def first_version(self) -> int:
        return self.events[0].version

    @property
    def version(self) -> int:
        """The aggregate's version after this commit."""
        return self.events[-1].version

    @property
    def command_id(self) -> str:
        return self.events[0].command_id

    @property
    def correlation_id(self) -> str | None:
        return self.events[0].correlation_id

    @property
    def issuer(self) -> str | None:
        return self.events[0].issuer

    def after(self, version: int) -> Commit:
        """This commit without its events at or before `version`."""
        if self.first_version > version:
            return self
        return Commit(self.address, self.position, tuple(e for e in self.events if e.version > version), self.writer)


class Cause(msgspec.Struct, frozen=True):
    """The command that caused an event: its id, correlation id, issuer and payload's digest."""

    command_id: str
    correlation_id: str | None = None
    issuer: str | None = None
    digest: str | None = None


class PreparedCommit(msgspec.Struct, frozen=True):
    """A commit encoded for writing: its events, JSON body and headers (`headers`, encoded once as
    `block`: the fence, known only when it is written, is added by `fenced`)."""

    events: tuple[wire.RecordedEvent, ...]
    payload: bytes
    headers: dict[str, str]
    writer: Writer | None
    block: bytes
    """The NATS header block of `headers`, without its closing blank line."""

    def fenced(self, fence: int) -> bytes:
        """The header block to write the commit with, fenced at stream sequence `fence`."""
        return b"%s%s: %d\r\n\r\n" % (self.block, _FENCE_NAME, fence)


_FENCE_NAME = wire.H_EXPECTED_LAST_SUBJECT_SEQ.encode()


def prepare_commit(
    address: Address,
    events: Sequence[EventData],
    *,
    expected_version: int,
    command_id: str,
    correlation_id: str | None,
    issuer: str | None,
    max_payload: int,
    causes: Sequence[Cause] | None = None,
    writer: Writer | None = None,
    log: Sequence[wire.LogEntry] = (),
) -> PreparedCommit:
    """Encode a commit and check it fits in one message; nothing is written here. `log`: the command-log
    entries of the commands it accepts, stored in its body (`wire.CommitBody.log`)."""
    if not events:
        raise InvalidArgumentError("a commit holds at least one event")
    if expected_version < 0:
        raise InvalidArgumentError(f"expected_version must be 0 or more, not {expected_version}")
    if not command_id:
        raise InvalidArgumentError("command_id must not be empty")
    if causes is None:
        causes = [Cause(command_id, correlation_id, issuer)] * len(events)
    elif len(causes) != len(events) or causes[0].command_id != command_id:
        raise InvalidArgumentError("causes name one command per event, the first being command_id")
    records = tuple(
        wire.RecordedEvent(
            type=e.type,
            schema=e.schema,
            version=expected_version + i,
            data=e.data,
            command_id=c.command_id,
            correlation_id=c.correlation_id,
            issuer=c.issuer,
            command_digest=c.digest if i == 1 or causes[i - 2].command_id != c.command_id else None,
        )
        for i, (e, c) in enumerate(zip(events, causes, strict=True), start=1)
    )
    body = (
        wire.CommitBody(events=list(records), log=msgspec.Raw(wire.log_list_encoder.encode(log)))
        if log
        else wire.CommitBody(events=list(records))
    )
    payload = wire.commit_encoder.encode(body)
    headers = {
        wire.H_COMMAND_ID: command_id,
        wire.H_FIRST_VERSION: str(expected_version + 1),
        wire.H_VERSION: str(expected_version + len(records)),
        wire.H_CONTENT_TYPE: wire.CONTENT_TYPE,
        # Command ids are chosen by clients and unique per aggregate, not per stream:
        # scope the dedup key to the aggregate so two aggregates never dedup each other.
        wire.H_MSG_ID: f"{address.aggregate_type}.{address.aggregate_id}.{command_id}",
    }
    if correlation_id is not None:
        headers[wire.H_CORRELATION_ID] = correlation_id
    if issuer is not None:
        headers[wire.H_ISSUER] = issuer
    if writer is not None:
        headers[wire.H_NODE] = writer.node
        headers[wire.H_EPOCH] = str(writer.epoch)
    block = encode_headers(headers)[:-2]
    size = len(payload) + len(block) + _FENCE_LINE + 2
    if size > max_payload:
        raise CommitTooLargeError(str(address), size=size, limit=max_payload)
    return PreparedCommit(records, payload, headers, writer, block)


def writer_of(headers: dict[str, str] | None) -> Writer | None:
    """The writer named by a stored commit's headers, if it names one."""
    if not headers or wire.H_NODE not in headers:
        return None
    epoch = headers.get(wire.H_EPOCH, "")
    return Writer(headers[wire.H_NODE], int(epoch) if epoch.isdigit() else 0)


def decode_commit(address: Address, position: int, payload: bytes, writer: Writer | None = None) -> Commit:
    """Decode a stored commit message; anything but a valid commit is a `CorruptCommitError`."""
    try:
        body = wire.commit_decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise CorruptCommitError(event_subject(address), position, str(e)) from None
    if not body.events:
        raise CorruptCommitError(event_subject(address), position, "it holds no events")
    return Commit(address, position, tuple(body.events), writer)
