"""The client: send commands to aggregates and get typed results; read an aggregate's state.

    async with Client(nc, inventory, namespace="prod") as client:
        result = await client.send(CheckIn(count=3), aggregate_id="sku-42")
        print(result.version, result.events)
        print((await client.read("InventoryItem", "sku-42")).state)

`send` retries on time-outs and "no responders" with the same command id, which
the runtime applies at most once, so a retry is always safe; a read writes nothing
and is retried alike.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from dataclasses import dataclass
from types import TracebackType
from typing import Any, NamedTuple, Self, TypedDict, Unpack

import msgspec
import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from radix import wire
from radix.domain import Aggregate, BoundedContext, Command, Event, encode_command
from radix.errors import (
    CommandConflictError,
    CommandFailedError,
    CommandRejectedError,
    CommandTimeoutError,
    DecodeError,
    InvalidArgumentError,
    RadixError,
    ReadError,
    ReadTimeoutError,
    UnreadableEventError,
)
from radix.transport.connection import ConnectOptions, connect
from radix.transport.inbox import Inbox
from radix.wire.names import Address, command_subject, query_subject, validate_namespace

__all__ = [
    "DEFAULT_ATTEMPT_TIMEOUT",
    "MAX_ATTEMPT_TIMEOUT",
    "SUBJECTS_KEPT",
    "Accepted",
    "AggregateState",
    "Client",
    "Response",
    "SendOptions",
    "command_headers",
    "outcome",
    "request_command",
    "state_of",
]

#: How many aggregates' validated command subjects a client keeps.
SUBJECTS_KEPT = 4096

#: Seconds a command's first attempt waits for its reply before it is sent again: a request that reached
#: a node just before the node was killed is lost, and nothing but time tells its sender.
DEFAULT_ATTEMPT_TIMEOUT = 0.5

#: The longest a later attempt waits (each waits twice the one before).
MAX_ATTEMPT_TIMEOUT = 4.0


@dataclass(frozen=True, slots=True)
class Accepted:
    """An accepted command: the aggregate's version after it and the events it produced."""

    command_id: str
    version: int
    events: tuple[Event, ...]
    records: tuple[wire.RecordedEvent, ...]


@dataclass(frozen=True, slots=True)
class AggregateState:
    """An aggregate as read from its owner: its version (0: no events yet) and its state (typed as the
    aggregate's state when it shows its state as it is, else the JSON value its `show` gives)."""

    version: int
    state: Any


class Response(NamedTuple):
    """A command's reply, and the node that answered it (its `Radix-Node` header)."""

    reply: wire.Reply
    node: str | None


class SendOptions(TypedDict, total=False):
    """What a sender may say with a command, besides its aggregate (the `Radix-*` headers, docs/protocol.md).

    `expected_version`: the version the decision was based on (a stale one meets the aggregate's
    conflict rule); `command_id`: the idempotence key (made up when absent); `issuer`: who sends it,
    recorded for audit; `correlation_id`: carried to the events and the command log.
    """

    expected_version: int | None
    command_id: str | None
    issuer: str | None
    correlation_id: str | None


def command_headers(command_id: str, options: SendOptions) -> dict[str, str]:
    """The `Radix-*` headers of a command request."""
    expected_version = options.get("expected_version")
    issuer, correlation_id = options.get("issuer"), options.get("correlation_id")
    headers = {wire.H_COMMAND_ID: command_id}
    if expected_version is not None:
        if expected_version < 0:
            raise InvalidArgumentError(f"expected_version must be 0 or more, not {expected_version}")
        headers[wire.H_EXPECTED_VERSION] = str(expected_version)
    if issuer is not None:
        headers[wire.H_ISSUER] = issuer
    if correlation_id is not None:
        headers[wire.H_CORRELATION_ID] = correlation_id
    return headers


async def request(
    nc: NATS,
    subject: str,
    payload: bytes,
    headers: dict[str, str] | None,
    *,
    timeout: float,
    attempt_timeout: float,
    timed_out: Exception,
) -> Msg:
    """Send a request and return its reply, sending it again on time-outs and "no responders" until
    `timeout`; then raise `timed_out`. Only for requests that are safe to send again.

    The first attempt waits `attempt_timeout`, each later one twice the one before (up to
    `MAX_ATTEMPT_TIMEOUT`): a request lost with a node that was killed is sent again soon, and one
    that is merely slow (a cluster under load) is not sent again and again."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    attempt = attempt_timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise timed_out
        try:
            return await Inbox.of(nc).request(subject, payload, timeout=min(attempt, remaining), headers=headers)
        except nats.errors.TimeoutError:
            attempt = min(attempt * 2, max(MAX_ATTEMPT_TIMEOUT, attempt_timeout))
        except nats.errors.NoRespondersError:
            pass
        await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, 1.0)


async def request_command(
    nc: NATS, subject: str, payload: bytes, headers: dict[str, str], *, timeout: float, attempt_timeout: float
) -> Response:
    """Send a command request and return the reply, sending it again on time-outs and "no responders".

    Sending again is safe: the command id in `headers` makes it apply at most once.
    """
    command_id = headers[wire.H_COMMAND_ID]
    timed_out = CommandTimeoutError(command_id, subject, timeout)
    msg = await request(
        nc, subject, payload, headers, timeout=timeout, attempt_timeout=attempt_timeout, timed_out=timed_out
    )
    try:
        reply = wire.reply_decoder.decode(msg.data)
    except msgspec.DecodeError as e:
        raise DecodeError(f"the reply to command {command_id} is not a Radix reply: {e}") from None
    return Response(reply, (msg.headers or {}).get(wire.H_NODE))


class Client:
    """Sends one context's commands over a NATS connection.

    Give it a connection (which stays yours) or `ConnectOptions` (it then connects
    on entering `async with` and closes on leaving).
    """

    def __init__(
        self,
        nats: NATS | ConnectOptions,
        context: BoundedContext,
        *,
        namespace: str,
        attempt_timeout: float = DEFAULT_ATTEMPT_TIMEOUT,
    ) -> None:
        self._options = nats if isinstance(nats, ConnectOptions) else None
        self._nc_given = None if isinstance(nats, ConnectOptions) else nats
        self._nc: NATS | None = self._nc_given
        self.context = context
        self.namespace = validate_namespace(namespace)
        self.attempt_timeout = attempt_timeout
        # Command ids this client makes: its own random prefix and a count (unique without a system call
        # for random bytes per command, as uuid4 makes).
        self._ids = f"{uuid.uuid4().hex[:16]}-"
        self._sent = itertools.count(1)
        self._subjects: dict[tuple[str, str], str] = {}  # (aggregate type, id) -> validated subject

    async def __aenter__(self) -> Self:
        if self._nc is None and self._options is not None:
            self._nc = await connect(self._options, name=f"radix client {self.namespace}/{self.context.name}")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection if the client opened it. Safe to call twice."""
        nc, self._nc = self._nc, self._nc_given
        if nc is not None and nc is not self._nc_given and not nc.is_closed:
            await nc.close()

    async def send(
        self,
        command: Command,
        *,
        aggregate_id: str,
        timeout: float = 10.0,
        **options: Unpack[SendOptions],
    ) -> Accepted:
        """Send a command and wait for its outcome (`options`: `expected_version`, `command_id`, `issuer`,
        `correlation_id`, as `SendOptions` describes them).

        Returns `Accepted`; raises `CommandRejectedError`, `CommandConflictError`
        (with the conflicting events) or `CommandFailedError` for the other replies,
        and `CommandTimeoutError` if no node answered within `timeout`.
        """
        aggregate_type = self.context.aggregate_type_of(type(command))
        subject = self._subject(aggregate_type, aggregate_id)
        headers = command_headers(options.get("command_id") or f"{self._ids}{next(self._sent):x}", options)
        if self._nc is None:
            raise RadixError("the client is not connected: use it in `async with`")
        response = await request_command(
            self._nc,
            subject,
            encode_command(command),
            headers,
            timeout=timeout,
            attempt_timeout=self.attempt_timeout,
        )
        return outcome(self.context, aggregate_type, response.reply)

    async def read(self, aggregate_type: str, aggregate_id: str, *, timeout: float = 10.0) -> AggregateState:
        """The aggregate's version and state, as its owner holds them after every command it answered before.

        Raises `InvalidNameError` for a type the context does not have or an invalid id, `ReadError`
        when the owner answers with an error, and `ReadTimeoutError` if no node answered in time.
        """
        self.context.codec(aggregate_type)
        subject = query_subject(Address(self.namespace, self.context.name, aggregate_type, aggregate_id))
        if self._nc is None:
            raise RadixError("the client is not connected: use it in `async with`")
        msg = await request(
            self._nc,
            subject,
            b"",
            None,
            timeout=timeout,
            attempt_timeout=self.attempt_timeout,
            timed_out=ReadTimeoutError(subject, timeout),
        )
        try:
            reply = wire.state_decoder.decode(msg.data)
        except msgspec.DecodeError as e:
            raise DecodeError(f"the reply to a read of {subject} is not a Radix reply: {e}") from None
        return state_of(self.context, aggregate_type, reply, subject=subject)

    def _subject(self, aggregate_type: str, aggregate_id: str) -> str:
        """The command subject of an aggregate; `InvalidNameError` if its id is not valid. Those of the
        latest `SUBJECTS_KEPT` aggregates sent to are kept, so a busy client validates each id once."""
        key = (aggregate_type, aggregate_id)
        subject = self._subjects.get(key)
        if subject is None:
            subject = command_subject(Address(self.namespace, self.context.name, aggregate_type, aggregate_id))
            if len(self._subjects) >= SUBJECTS_KEPT:
                self._subjects.clear()
            self._subjects[key] = subject
        return subject


def outcome(context: BoundedContext, aggregate_type: str, reply: wire.Reply) -> Accepted:
    """What a reply means to the sender: `Accepted` with the events decoded, else the matching error."""
    if reply.status == wire.ACCEPTED:
        codec = context.codec(aggregate_type)
        try:
            events = tuple(codec.decode_event(e.type, e.schema, e.data) for e in reply.events)
        except UnreadableEventError as e:  # written by newer code: the command is applied all the same
            raise UnreadableEventError(
                f"command {reply.command_id} was accepted (version {reply.version}), so do not send it again, "
                f"but this client cannot read the events it wrote: {e.what}",
                type_name=e.type_name,
                schema=e.schema,
                deploy=e.deploy,
            ) from None
        return Accepted(
            command_id=reply.command_id, version=reply.version or 0, events=events, records=tuple(reply.events)
        )
    if reply.status == wire.REJECTED:
        raise CommandRejectedError(reply)
    if reply.status == wire.CONFLICT:
        codec = context.codec(aggregate_type)
        raise CommandConflictError(reply, [codec.decode_event(e.type, e.schema, e.data) for e in reply.conflicts])
    raise CommandFailedError(reply)


def state_of(context: BoundedContext, aggregate_type: str, reply: wire.StateReply, *, subject: str) -> AggregateState:
    """What a read's reply means: the state typed as the aggregate's own when it is shown as it is, else the
    JSON value the aggregate's `show` gave; `ReadError` for an error."""
    if reply.status != wire.OK:
        raise ReadError(subject, reply.reason or reply.status)
    aggregate = context.codec(aggregate_type).aggregate
    if type(aggregate).show is Aggregate.show:
        return AggregateState(reply.version or 0, msgspec.json.decode(reply.state, type=aggregate.state_type))
    return AggregateState(reply.version or 0, msgspec.json.decode(reply.state))
