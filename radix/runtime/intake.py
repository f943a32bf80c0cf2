"""Intake: a command from the wire, checked and decoded, or refused with a clear `error` to its sender.

The subscription callbacks do only cheap, synchronous work: check the subject (a context
this node hosts, an aggregate type it defines, a valid id), the headers and the size, and
decode the body into exactly one member of the aggregate's command union. Anything wrong is
answered at once and logged (docs/protocol.md lists the reasons); it never reaches an actor.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Final

from nats.aio.msg import Msg

from radix import wire
from radix.domain import AggregateCodec
from radix.errors import DecodeError, InvalidNameError
from radix.observability.metrics import Metrics
from radix.runtime.answers import BadCommand, Replies
from radix.runtime.config import IntakeConfig
from radix.runtime.hosting import Hosting
from radix.runtime.mailbox import READ, Envelope
from radix.wire.names import COMMANDS, READS, Address, CommandSubject, parse_command_subject, protected_subject

__all__ = ["ROUTES_KEPT", "Intake", "Route"]

#: Command subjects kept validated (with their address and codec), so that busy aggregates' commands
#: skip validation; past it the cache starts again. Not one per live aggregate: that cost an idle
#: actor about 200 bytes.
ROUTES_KEPT: Final = 8192

#: Where a decoded command goes next: the router.
Route = Callable[[Address, AggregateCodec, Envelope], Awaitable[None]]


class Intake:
    """Takes commands from the wire (and forwarded by other nodes) for one node."""

    def __init__(
        self, hosting: Hosting, config: IntakeConfig, *, replies: Replies, metrics: Metrics, route: Route
    ) -> None:
        self._hosting = hosting
        self._config = config
        self._replies = replies
        self._metrics = metrics
        self._route = route
        self._routes: dict[str, tuple[Address, AggregateCodec, bool]] = {}  # subject -> (address, codec, a read)

    async def on_command(self, msg: Msg) -> None:
        """The callback of the command subscriptions."""
        tokens = msg.subject.split(".", 3)
        self._metrics.received(tokens[1], tokens[2])
        await self.take(msg.subject, msg.data, msg.headers or {}, msg.reply or None, hops=0)

    async def on_read(self, msg: Msg) -> None:
        """The callback of the read subscriptions (reads are not counted as commands)."""
        await self.take(msg.subject, msg.data, msg.headers or {}, msg.reply or None, hops=0)

    async def take(
        self, subject: str, payload: bytes, headers: dict[str, str], reply_to: str | None, hops: int
    ) -> None:
        """Route a command sent to `subject` (by a client, or forwarded `hops` times), or refuse it. One asking
        to be answered on a subject of Radix's own or of the server's (`wire.names.protected_subject`) is
        dropped, unanswered: an answer there could land in a stream."""
        if reply_to is not None and protected_subject(reply_to):
            self._replies.dropped(reply_to)
            return
        try:
            envelope, address, codec = self.parse(subject, payload, headers, reply_to, hops)
        except BadCommand as bad:
            await self._replies.refuse(subject, headers, reply_to, bad)
            return
        await self._route(address, codec, envelope)

    def parse(
        self, subject: str, payload: bytes, headers: dict[str, str], reply_to: str | None, hops: int
    ) -> tuple[Envelope, Address, AggregateCodec]:
        """The command as an envelope, with its aggregate's address and codec; `BadCommand` if it is not one."""
        command_id = headers.get(wire.H_COMMAND_ID) or uuid.uuid4().hex
        route = self._routes.get(subject)
        parts: CommandSubject | None = None
        if route is None:
            parts = parse_command_subject(subject)
            served = parts is not None and parts.kind in (COMMANDS, READS)
            if parts is None or not served or self._hosting.get(parts.namespace, parts.context) is None:
                raise BadCommand(
                    f"{subject} is not a command subject this node serves",
                    command_id=command_id,
                    type_name=parts.aggregate_type if parts is not None else None,
                    address=None,
                )
        limit = self._config.max_command_id
        if len(command_id.encode()) > limit or not command_id.isprintable():
            reason = f"{wire.H_COMMAND_ID} must be printable and at most {limit} bytes"
            type_name = route[0].aggregate_type if route is not None else parts.aggregate_type if parts else None
            raise BadCommand(reason, command_id=uuid.uuid4().hex, type_name=type_name, address=None)
        most = self._config.max_header_value
        for name in (wire.H_ISSUER, wire.H_CORRELATION_ID):
            value = headers.get(name)
            if value is not None and (len(value.encode()) > most or not value.isprintable()):
                type_name = route[0].aggregate_type if route is not None else parts.aggregate_type if parts else None
                reason = f"{name} must be printable and at most {most} bytes (it is written with every event)"
                raise BadCommand(reason, command_id=command_id, type_name=type_name, address=None)
        if route is None:
            assert parts is not None
            route = self._resolve(subject, parts, command_id)
        address, codec, read = route
        command: object = READ
        expected: int | None = None
        if read:
            payload = b""  # a read's body, if any, is ignored
        else:
            command, expected = self._decoded(payload, headers, command_id, address, codec)
        if wire.H_COMMAND_ID not in headers:
            headers = {**headers, wire.H_COMMAND_ID: command_id}  # a forward keeps the id given here
        envelope = Envelope(
            command=command,
            type_name="read" if read else type(command).__name__,
            command_id=command_id,
            expected_version=expected,
            issuer=headers.get(wire.H_ISSUER),
            correlation_id=headers.get(wire.H_CORRELATION_ID),
            reply_to=reply_to,
            subject=subject,
            payload=payload,
            headers=headers,
            hops=hops,
            received=time.monotonic(),
        )
        return envelope, address, codec

    def _decoded(
        self,
        payload: bytes,
        headers: dict[str, str],
        command_id: str,
        address: Address,
        codec: AggregateCodec,
    ) -> tuple[object, int | None]:
        """The command a payload holds and the version its sender saw; `BadCommand` if it is not one."""

        def bad(reason: str) -> BadCommand:
            return BadCommand(reason, command_id=command_id, type_name=address.aggregate_type, address=address)

        expected: int | None = None
        if (raw := headers.get(wire.H_EXPECTED_VERSION)) is not None:
            expected = wire.whole_number(raw)
            if expected is None:
                raise bad(
                    f"{wire.H_EXPECTED_VERSION} must be a whole number of 0 or more in ASCII digits (at most "
                    f"{wire.MAX_DIGITS}), not {raw[:40]!r}"
                )
        if len(payload) > self._config.max_command_bytes:
            raise bad(
                f"the command is {len(payload)} bytes; this node accepts at most {self._config.max_command_bytes}"
            )
        try:
            return codec.decode_command(payload), expected
        except DecodeError as e:
            raise bad(str(e)) from None

    def _resolve(self, subject: str, parts: CommandSubject, command_id: str) -> tuple[Address, AggregateCodec, bool]:
        """The address and codec a command or read subject names (and whether it is a read's), kept for the
        next request sent there."""
        hosted = self._hosting.get(parts.namespace, parts.context)
        assert hosted is not None
        if parts.aggregate_type is None or parts.aggregate_id is None:
            raise BadCommand(
                "send commands to radix.{namespace}.{context}.cmd.{AggregateType}.{id}",
                command_id=command_id,
                type_name=parts.aggregate_type,
                address=None,
            )
        try:
            codec = hosted.context.codec(parts.aggregate_type)
            # The hosted context's own strings, not fresh copies from the subject: one less copy of each
            # per live aggregate.
            address = Address(hosted.namespace, hosted.context.name, codec.type_name, parts.aggregate_id)
        except InvalidNameError as e:
            raise BadCommand(str(e), command_id=command_id, type_name=parts.aggregate_type, address=None) from None
        if len(self._routes) >= ROUTES_KEPT:
            self._routes.clear()  # a cache of validated subjects; rebuilt as commands come
        route = self._routes[subject] = (address, codec, parts.kind == READS)
        return route
