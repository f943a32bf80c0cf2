"""The command log: every command's outcome, written off the hot path.

`record` only buffers an entry: a command is answered before its entry is written, and a
failing log never changes a command's outcome (failures are counted and logged). At the
end of each turn of the event loop the entries recorded in it are published, one message
per entry on its aggregate's log subject, and only the last entry for each stream asks
for an acknowledgement: JetStream takes a connection's messages to one stream in order,
so that acknowledgement answers for the entries before it. `flush` waits for every
acknowledgement outstanding.
"""

from __future__ import annotations

import asyncio
import functools

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import api as js_api

from radix import wire
from radix.observability.logs import logger
from radix.store.streams import ensure_stream
from radix.transport.inbox import Inbox
from radix.transport.publish import publish
from radix.wire.names import LOG, commands_stream, context_filter

__all__ = ["CommandLog"]

_encoder = msgspec.json.Encoder()


class _Ack(msgspec.Struct):
    error: dict[str, object] | None = None


_ack_decoder = msgspec.json.Decoder(_Ack)


class CommandLog:
    """Publishes command-log entries in bursts and counts their acknowledgements."""

    def __init__(self, nc: NATS, *, max_age: float, replicas: int) -> None:
        self._nc = nc
        self._max_age = max_age
        self._replicas = replicas
        self._inbox = Inbox.of(nc)  # acknowledgements arrive on the connection's shared inbox
        self._bursts: dict[str, list[tuple[str, bytes]]] = {}  # stream prefix -> entries not yet sent
        self._sending: asyncio.Task[None] | None = None
        self._group: asyncio.TaskGroup | None = None
        self._unacknowledged = 0  # entries sent whose burst's acknowledgement has not come
        self._settled = asyncio.Event()
        self._settled.set()
        self.written = 0
        self.failed = 0

    async def ensure_stream(self, namespace: str, context: str) -> None:
        """Create the command-log stream of (namespace, context) unless it exists."""
        config = js_api.StreamConfig(
            name=commands_stream(namespace, context),
            description=f"Radix command log of context {context!r} in namespace {namespace!r}",
            subjects=[context_filter(namespace, context, LOG)],
            storage=js_api.StorageType.FILE,
            num_replicas=self._replicas,
            retention=js_api.RetentionPolicy.LIMITS,
            discard=js_api.DiscardPolicy.OLD,
            max_age=self._max_age,
            allow_direct=True,
        )
        await ensure_stream(self._nc.jetstream(), config)

    async def start(self, group: asyncio.TaskGroup) -> None:
        """Listen for acknowledgements; bursts are then sent by tasks of `group`."""
        await self._inbox.listen()
        self._group = group

    def record(self, subject: str, entry: wire.LogEntry) -> None:
        """Buffer one entry (for `radix.{ns}.{ctx}.log.…`); it is published at the end of this turn of the loop."""
        stream = subject[: subject.find(".log.")]
        self._bursts.setdefault(stream, []).append((subject, _encoder.encode(entry)))
        self._settled.clear()
        if self._sending is None:
            assert self._group is not None, "start the command log first"
            self._sending = self._group.create_task(self._send())

    async def _send(self) -> None:
        """Publish what was buffered, one burst per stream, each acknowledged by its last entry."""
        try:
            while self._bursts:
                bursts, self._bursts = self._bursts, {}
                for entries in bursts.values():
                    await self._publish(entries)
        finally:
            self._sending = None
            self._check_settled()

    async def _publish(self, entries: list[tuple[str, bytes]]) -> None:
        limit = self._nc.max_payload
        if oversized := [subject for subject, data in entries if len(data) > limit]:
            logger.warning("command log entries larger than the server takes", subjects=oversized, limit=limit)
            self.failed += len(oversized)
            entries = [(subject, data) for subject, data in entries if len(data) <= limit]
            if not entries:
                return
        *unacknowledged, (last_subject, last) = entries
        reply = self._inbox.expect(functools.partial(self._acknowledged, len(entries)))
        self._unacknowledged += len(entries)
        try:
            for subject, data in unacknowledged:
                await publish(self._nc, subject, data)
            await publish(self._nc, last_subject, last, reply=reply)
        except Exception as e:  # a log failure must never fail the command; unconfirmed counts as failed
            self._inbox.forget(reply)
            self._unacknowledged -= len(entries)
            self.failed += len(entries)
            logger.warning("command log entries not written", subject=last_subject, count=len(entries), error=repr(e))

    def _acknowledged(self, count: int, msg: Msg) -> None:
        self._unacknowledged -= count
        try:
            failed = _ack_decoder.decode(msg.data).error is not None
        except msgspec.DecodeError:
            failed = True
        if failed:
            self.failed += count
            logger.warning("command log entries refused", count=count, reply=msg.data.decode(errors="replace"))
        else:
            self.written += count
        self._check_settled()

    def _check_settled(self) -> None:
        if not self._unacknowledged and not self._bursts and self._sending is None:
            self._settled.set()

    async def flush(self, timeout: float) -> bool:
        """Wait until every entry is published and acknowledged; False if some were not within `timeout`."""
        try:
            async with asyncio.timeout(timeout):
                await self._settled.wait()
        except TimeoutError:
            logger.warning("command log entries unacknowledged at flush", pending=self._unacknowledged)
            return False
        return True
