"""The command log: every command's outcome, written off the hot path.

Entries are published to JetStream with pipelined acknowledgements: `record` only
queues the publish and never waits for the server, so a command is answered before
its log entry is acknowledged, and a failing log never changes a command's outcome
(failures are counted and logged). `flush` waits for outstanding acknowledgements.
"""

from __future__ import annotations

import asyncio
import itertools

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import api as js_api

from radix import wire
from radix.logs import logger
from radix.names import commands_stream, context_filter
from radix.store._streams import ensure_stream

_encoder = msgspec.json.Encoder()


class _Ack(msgspec.Struct):
    error: dict[str, object] | None = None


_ack_decoder = msgspec.json.Decoder(_Ack)


class CommandLog:
    """Publishes command-log entries and counts their acknowledgements."""

    def __init__(self, nc: NATS, *, max_age: float, replicas: int) -> None:
        self._nc = nc
        self._max_age = max_age
        self._replicas = replicas
        self._inbox = nc.new_inbox()
        self._sub: Subscription | None = None
        self._tokens = itertools.count()
        self._pending: set[str] = set()
        self._settled = asyncio.Event()
        self._settled.set()
        self.written = 0
        self.failed = 0

    async def ensure_stream(self, namespace: str, context: str) -> None:
        """Create the command-log stream of (namespace, context) unless it exists."""
        config = js_api.StreamConfig(
            name=commands_stream(namespace, context),
            description=f"Radix command log of context {context!r} in namespace {namespace!r}",
            subjects=[context_filter(namespace, context, "log")],
            storage=js_api.StorageType.FILE,
            num_replicas=self._replicas,
            retention=js_api.RetentionPolicy.LIMITS,
            discard=js_api.DiscardPolicy.OLD,
            max_age=self._max_age,
            allow_direct=True,
        )
        await ensure_stream(self._nc.jetstream(), config)

    async def start(self) -> None:
        if self._sub is None:
            self._sub = await self._nc.subscribe(f"{self._inbox}.*", cb=self._on_ack)

    async def record(self, subject: str, entry: wire.LogEntry) -> None:
        """Queue one entry for publishing; returns without waiting for the server."""
        token = str(next(self._tokens))
        self._pending.add(token)
        self._settled.clear()
        try:
            await self._nc.publish(subject, _encoder.encode(entry), reply=f"{self._inbox}.{token}")
        except Exception as e:  # a log failure must never fail the command
            self._settle(token, failed=True)
            logger.warning("command log entry not written", subject=subject, error=repr(e))

    async def _on_ack(self, msg: Msg) -> None:
        token = msg.subject.rpartition(".")[2]
        try:
            failed = _ack_decoder.decode(msg.data).error is not None
        except msgspec.DecodeError:
            failed = True
        if failed:
            logger.warning("command log entry refused", reply=msg.data.decode(errors="replace"))
        self._settle(token, failed=failed)

    def _settle(self, token: str, *, failed: bool) -> None:
        if token not in self._pending:
            return
        self._pending.discard(token)
        if failed:
            self.failed += 1
        else:
            self.written += 1
        if not self._pending:
            self._settled.set()

    async def flush(self, timeout: float) -> bool:
        """Wait until every entry is acknowledged; False if some were not within `timeout`."""
        try:
            async with asyncio.timeout(timeout):
                await self._settled.wait()
        except TimeoutError:
            logger.warning("command log entries unacknowledged at flush", pending=len(self._pending))
            return False
        return True

    async def close(self) -> None:
        """Stop listening for acknowledgements. Safe to call twice."""
        sub, self._sub = self._sub, None
        if sub is not None and not self._nc.is_closed:
            await sub.unsubscribe()
