"""Replies on one inbox subscription per connection, shared by every part that uses it: requests
(appends, reads, KV writes, commands sent), and acknowledgements only counted (the command log).

nats-py's `request` makes an inbox token (a NUID and random bytes) and runs `asyncio.wait_for` for
every request: on the hot paths (an append per command, a request per command sent) that was over
a third of the CPU a request costs. Here the requests of a connection share one wildcard
subscription, tokens come from a counter, and a time-out is one timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from radix.transport.publish import publish

__all__ = ["Inbox", "status_of"]

_ATTRIBUTE = "_radix_inbox"


class Inbox:
    """The reply inbox of one connection: `Inbox.of(nc)`."""

    def __init__(self, nc: NATS) -> None:
        self._nc = nc
        self._prefix = nc.new_inbox()
        self._sub: Subscription | None = None
        self._subscribing = asyncio.Lock()
        self._tokens = itertools.count()
        self._handlers: dict[str, Callable[[Msg], None]] = {}  # one message answers: the first goes here
        self._queues: dict[str, asyncio.Queue[Msg]] = {}  # a request answered by many messages

    @classmethod
    def of(cls, nc: NATS) -> Inbox:
        """The connection's inbox (kept with the connection, so it goes when the connection does)."""
        held = vars(nc)
        inbox = held.get(_ATTRIBUTE)
        if not isinstance(inbox, Inbox):
            inbox = held[_ATTRIBUTE] = cls(nc)
        return inbox

    async def request(
        self, subject: str, payload: bytes, *, timeout: float, headers: Mapping[str, str] | bytes | None = None
    ) -> Msg:
        """Publish a request and return its reply; raises nats-py's `TimeoutError` and `NoRespondersError`
        as `Client.request` does. `headers` as `publish` takes them: a mapping, or an encoded block."""
        await self.listen()
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Msg] = loop.create_future()
        reply = self.expect(functools.partial(_settle, answer))
        timer = loop.call_later(timeout, _expire, answer)
        try:
            await publish(self._nc, subject, payload, reply=reply, headers=headers)
            msg = await answer
        finally:
            timer.cancel()
            self.forget(reply)
        if status_of(msg) == "503":
            raise nats.errors.NoRespondersError
        return msg

    @contextlib.contextmanager
    def replies(self) -> Iterator[tuple[str, asyncio.Queue[Msg]]]:
        """A reply subject, and the queue its messages arrive on, for a request answered by several
        messages (a batched direct get). Call `listen()` first."""
        token = str(next(self._tokens))
        queue: asyncio.Queue[Msg] = asyncio.Queue()
        self._queues[token] = queue
        try:
            yield f"{self._prefix}.{token}", queue
        finally:
            del self._queues[token]

    def expect(self, handle: Callable[[Msg], None]) -> str:
        """A reply subject whose one reply goes to `handle` (no time-out: `request` adds one; the command
        log's acknowledgements are only counted). Call `listen()` first; `forget` drops it unanswered."""
        token = str(next(self._tokens))
        self._handlers[token] = handle
        return f"{self._prefix}.{token}"

    def forget(self, reply: str) -> None:
        self._handlers.pop(reply[len(self._prefix) + 1 :], None)

    async def listen(self) -> None:
        """Subscribe to the inbox unless it is already (once, however many ask at the same time: a second
        subscription would deliver every reply twice)."""
        if self._sub is None:
            async with self._subscribing:
                if self._sub is None:
                    self._sub = await self._nc.subscribe(f"{self._prefix}.*", cb=self._on_reply)

    async def _on_reply(self, msg: Msg) -> None:
        token = msg.subject[len(self._prefix) + 1 :]
        handle = self._handlers.pop(token, None)
        if handle is not None:
            handle(msg)
            return
        queue = self._queues.get(token)
        if queue is not None:
            queue.put_nowait(msg)


def status_of(msg: Msg) -> str | None:
    """The status of a message that has one (a header-only status message), else None."""
    if msg.data or not msg.headers:
        return None
    status: Any = msg.headers.get("Status")
    return str(status) if status is not None else None


def _settle(answer: asyncio.Future[Msg], msg: Msg) -> None:
    if not answer.done():  # it may have timed out a moment before
        answer.set_result(msg)


def _expire(answer: asyncio.Future[Msg]) -> None:
    if not answer.done():
        answer.set_exception(nats.errors.TimeoutError())
