"""A node's inbox, `radix.{ns}._node.{node_id}.{verb}`: commands forwarded by other nodes, and the
control requests of operators and the CLI (status, migrate, drain; docs/protocol.md, "Node inboxes").
Payloads are the structs of `radix.wire.control`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from radix import wire
from radix.errors import InvalidNameError
from radix.wire.names import DRAIN, FORWARD, MIGRATE, PING, STATUS, Address, node_verb

__all__ = ["Control"]

Take = Callable[[str, bytes, dict[str, str], str | None, int], Awaitable[None]]
Migrate = Callable[[Address, str | None], Awaitable[wire.ControlAnswer]]


class Control:
    """Answers one node's inbox."""

    def __init__(
        self,
        nc: NATS,
        *,
        node_id: str,
        take: Take,
        status: Callable[[], wire.StatusReport],
        migrate: Migrate,
        drain: Callable[[], None],
        spawn: Callable[[Coroutine[Any, Any, None]], None],
    ) -> None:
        self._nc = nc
        self._node_id = node_id
        self._take = take
        self._status = status
        self._migrate = migrate
        self._drain = drain
        self._spawn = spawn

    async def on_inbox(self, msg: Msg) -> None:
        """The callback of the node's inbox subscriptions."""
        namespace, verb = node_verb(msg.subject)
        if verb == FORWARD:
            headers = dict(msg.headers or {})
            subject = headers.pop(wire.H_SUBJECT, "")
            reply_to = headers.pop(wire.H_REPLY_TO, "") or None
            hops = headers.pop(wire.H_HOPS, "1")
            await self._take(subject, msg.data, headers, reply_to, wire.whole_number(hops) or 1)
            answer = wire.FORWARD_TAKEN
        elif verb == PING:
            answer = b""  # any answer says the node is connected: see `KVPlacement.presume_dead`
        elif verb == STATUS:
            answer = wire.control_encoder.encode(self._status())
        elif verb == MIGRATE:
            # A move waits for the actor's turn in flight: answer from a task, not this callback.
            self._spawn(self._answer_migrate(namespace, msg))
            return
        elif verb == DRAIN:
            self._drain()
            answer = wire.control_encoder.encode(wire.ControlAnswer(ok=True, node=self._node_id, state="draining"))
        else:
            answer = wire.control_encoder.encode(wire.ControlAnswer(ok=False, reason=f"unknown request {verb!r}"))
        if msg.reply:
            await self._nc.publish(msg.reply, answer)

    async def _answer_migrate(self, namespace: str, msg: Msg) -> None:
        try:
            request = wire.migrate_decoder.decode(msg.data)
            address = Address(namespace, request.context, request.aggregate_type, request.aggregate_id)
            result = await self._migrate(address, request.to)
        except (msgspec.DecodeError, InvalidNameError) as e:
            result = wire.ControlAnswer(ok=False, reason=str(e))
        if msg.reply:
            await self._nc.publish(msg.reply, wire.control_encoder.encode(result))
