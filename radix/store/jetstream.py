"""The event store on NATS JetStream.

One stream per (namespace, context), one subject per aggregate, one message per
commit. Every append carries `Nats-Expected-Last-Subject-Sequence`, so the server
refuses a write from anyone whose view of the aggregate is stale: the fence that
keeps a history from forking. Reads use batched direct get (no consumer per read)
and switch to an ordered consumer for long histories.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final, Literal, TypeVar

import msgspec
import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import api as js_api

from radix import wire
from radix.domain import EventData
from radix.errors import StoreError, StoreUnavailableError, VersionConflictError, require
from radix.store.commit import Cause, Commit, Writer, decode_commit, prepare_commit, writer_of
from radix.store.streams import (
    Once,
    ensure_stream,
    get_from_leader,
    publish_settled,
    with_backoff,
    wrong_last_sequence,
)
from radix.transport.inbox import Inbox, status_of
from radix.wire.names import EVENTS, Address, context_filter, direct_get, event_subject, events_stream

__all__ = ["JetStreamEventStore", "StoreConfig"]

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class StoreConfig:
    """How the JetStream event store creates streams and talks to the server."""

    replicas: int = 1
    storage: Literal["file", "memory"] = "file"
    duplicate_window: float = 120.0
    timeout: float = 5.0
    unavailable_for: float = 15.0
    batch: int = 512
    ordered_consumer_above: int = 4096
    position_cache: int = 100_000

    def __post_init__(self) -> None:
        require(self.replicas in (1, 3, 5), "StoreConfig.replicas", self.replicas, "must be 1, 3 or 5")
        require(self.storage in ("file", "memory"), "StoreConfig.storage", self.storage, "must be 'file' or 'memory'")
        for name in ("duplicate_window", "timeout"):
            require(getattr(self, name) > 0, f"StoreConfig.{name}", getattr(self, name), "must be positive")
        require(self.unavailable_for >= 0, "StoreConfig.unavailable_for", self.unavailable_for, "must be 0 or more")
        for name in ("batch", "ordered_consumer_above", "position_cache"):
            require(getattr(self, name) >= 1, f"StoreConfig.{name}", getattr(self, name), "must be at least 1")


class _PubAckError(msgspec.Struct):
    code: int = 0
    err_code: int = 0
    description: str = ""


class _PubAck(msgspec.Struct):
    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    error: _PubAckError | None = None


_ack_decoder: Final = msgspec.json.Decoder(_PubAck)
_json: Final = msgspec.json.Encoder()


class JetStreamEventStore:
    """An `EventStore` on JetStream, over a connected nats-py client.

    Use it as an async context manager (or call `close()`). Its requests (appends, direct gets) are
    answered on the connection's shared inbox (`radix.transport.inbox`), which stays with the connection.
    """

    def __init__(self, nc: NATS, *, config: StoreConfig | None = None) -> None:
        self._nc = nc
        self._js = nc.jetstream(timeout=(config or StoreConfig()).timeout)
        self.config = config or StoreConfig()
        self._streams: Once[tuple[str, str], str] = Once(self._create_stream)
        # Streams with a single replica: a direct get is the leader's answer, so reads meant for the
        # leader are direct gets (faster than a JetStream API request).
        self._one_copy: set[str] = set()
        # Last known (version, stream sequence) per aggregate: the fence for the
        # next append. A stale entry costs one refused publish, never a wrong write.
        self._positions: dict[Address, tuple[int, int]] = {}
        self._inbox = Inbox.of(nc)

    async def __aenter__(self) -> JetStreamEventStore:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop creating streams. Safe to call twice (the reply inbox is the connection's)."""
        self._streams.close()

    # -- streams ---------------------------------------------------------------------------

    async def ensure_stream(self, namespace: str, context: str) -> str:
        """Create the events stream of (namespace, context) unless it exists; return its name."""
        return await self._streams.get((namespace, context))

    def stream_config(self, name: str, namespace: str, context: str) -> js_api.StreamConfig:
        """The settings of a context's events stream."""
        return js_api.StreamConfig(
            name=name,
            description=f"Radix events of context {context!r} in namespace {namespace!r}",
            subjects=[context_filter(namespace, context, EVENTS)],
            storage=js_api.StorageType.FILE if self.config.storage == "file" else js_api.StorageType.MEMORY,
            num_replicas=self.config.replicas,
            retention=js_api.RetentionPolicy.LIMITS,
            discard=js_api.DiscardPolicy.NEW,
            duplicate_window=self.config.duplicate_window,
            allow_direct=True,
            allow_atomic=True,
            deny_delete=True,
        )

    async def _create_stream(self, scope: tuple[str, str]) -> str:
        namespace, context = scope
        name = events_stream(namespace, context)
        config = self.stream_config(name, namespace, context)
        info = await ensure_stream(self._js, config)
        if not info.config.allow_direct or info.config.subjects != config.subjects:
            raise StoreError(
                f"stream {name} exists with settings Radix cannot use (subjects {info.config.subjects}, "
                f"allow_direct {info.config.allow_direct}); expected subjects {config.subjects} with "
                "allow_direct: fix or remove the stream"
            )
        if info.config.num_replicas == 1:
            self._one_copy.add(name)
        return name

    # -- appending ---------------------------------------------------------------------------

    async def append(
        self,
        address: Address,
        events: Sequence[EventData],
        *,
        expected_version: int,
        command_id: str,
        correlation_id: str | None = None,
        issuer: str | None = None,
        causes: Sequence[Cause] | None = None,
        writer: Writer | None = None,
        log: Sequence[wire.LogEntry] = (),
    ) -> Commit:
        prepared = prepare_commit(
            address,
            events,
            expected_version=expected_version,
            command_id=command_id,
            correlation_id=correlation_id,
            issuer=issuer,
            max_payload=self._nc.max_payload,
            causes=causes,
            writer=writer,
            log=log,
        )
        await self.ensure_stream(address.namespace, address.context)
        fence = await self._fence(address, expected_version)
        if fence is None:
            return await self._refused(address, expected_version, command_id)
        headers = prepared.fenced(fence)
        subject = event_subject(address)
        # The hot path: one request, awaited here. Its retries (while JetStream is unavailable, or another
        # write to the subject is in flight) are not: each await level is resumed on every reply.
        try:
            reply = await self._inbox.request(subject, prepared.payload, timeout=self.config.timeout, headers=headers)
            ack: _PubAck | None = _ack_decoder.decode(reply.data)
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
            ack = None
        if ack is None or ack.error is not None:
            ack = await publish_settled(
                lambda: self._publish(subject, prepared.payload, headers),
                lambda a: a.error.err_code if a.error else None,
                first=ack,
            )
        if ack.error is not None:
            if wrong_last_sequence(ack.error.err_code):
                self._positions.pop(address, None)
                return await self._refused(address, expected_version, command_id)
            raise StoreError(f"JetStream refused the commit to {address}: {ack.error.description}")
        if ack.duplicate:
            # The same command id was appended within the duplicate window: answer that commit.
            original = await self._get(address, ack.seq)
            self._remember(original)
            return original
        commit = Commit(address, ack.seq, prepared.events, writer)
        self._remember(commit)
        return commit

    async def _fence(self, address: Address, expected_version: int) -> int | None:
        """The sequence the aggregate's last message must have, or None if it is not at that version."""
        if expected_version == 0:
            return 0
        known = self._positions.get(address)
        if known is not None and known[0] == expected_version:
            return known[1]
        last = await self._last(address)
        if last is None or last.version != expected_version:
            return None
        return last.position

    async def _refused(self, address: Address, expected_version: int, command_id: str) -> Commit:
        # The server checks the sequence before deduplicating, so a retried command
        # that already landed is refused like any stale write: tell them apart by
        # the command id of the last commit.
        last = await self._last(address)
        if last is not None and last.command_id == command_id:
            return last
        raise VersionConflictError(str(address), expected=expected_version, actual=last.version if last else 0)

    async def _publish(self, subject: str, payload: bytes, headers: bytes) -> _PubAck:
        # Retrying is safe: the append is fenced and deduplicated, so a publish that
        # timed out but landed is refused (or deduplicated) when sent again.
        async def attempt() -> _PubAck:
            try:
                reply = await self._inbox.request(subject, payload, timeout=self.config.timeout, headers=headers)
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as e:
                raise StoreUnavailableError(
                    f"JetStream did not acknowledge a commit on {subject} within {self.config.unavailable_for}s "
                    f"({e!r}); it may or may not have been written: retry with the same command id to find out"
                ) from e
            return _ack_decoder.decode(reply.data)

        return await self._retry(attempt)

    async def _retry(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run `attempt`, again with backoff while JetStream is unavailable (a leader election, a restart).

        Gives up after `StoreConfig.unavailable_for` seconds: a stream leader election after
        a server is killed stalls writes for several seconds.
        """
        return await with_backoff(attempt, retry_on=(StoreUnavailableError,), wait=self.config.unavailable_for)

    def _remember(self, commit: Commit) -> None:
        positions = self._positions
        if len(positions) >= self.config.position_cache and commit.address not in positions:
            del positions[next(iter(positions))]
        positions[commit.address] = (commit.version, commit.position)

    # -- reading -----------------------------------------------------------------------------

    async def version(self, address: Address) -> int:
        last = await self._last(address)
        return last.version if last else 0

    async def _last(self, address: Address) -> Commit | None:
        stream = await self.ensure_stream(address.namespace, address.context)
        msg = await self._direct(direct_get(stream, event_subject(address)), b"")
        if status_of(msg) == "404":
            return None
        commit = self._commit(address, msg)
        self._remember(commit)
        return commit

    async def head(self, address: Address) -> int:
        stream = await self.ensure_stream(address.namespace, address.context)
        if stream in self._one_copy:
            last = await self._last(address)
            return last.position if last is not None else 0
        raw = await self._retry(lambda: get_from_leader(self._js, stream, event_subject(address)))
        return (raw.seq or 0) if raw is not None else 0

    async def commit_at(self, address: Address, position: int) -> Commit | None:
        stream = await self.ensure_stream(address.namespace, address.context)
        msg = await self._direct(direct_get(stream), _json.encode({"seq": position}))
        if status_of(msg) == "404" or (msg.headers or {}).get("Nats-Subject") != event_subject(address):
            return None
        if status_of(msg) is not None:
            raise StoreError(f"message {position} of {stream} could not be read: {_describe(msg)}")
        return self._commit(address, msg)

    async def _get(self, address: Address, position: int) -> Commit:
        stream = await self.ensure_stream(address.namespace, address.context)
        msg = await self._direct(direct_get(stream), _json.encode({"seq": position}))
        if status_of(msg) is not None:
            raise StoreError(f"message {position} of {stream} could not be read: {_describe(msg)}")
        return self._commit(address, msg)

    async def _direct(self, subject: str, payload: bytes) -> Msg:
        async def attempt() -> Msg:
            try:
                return await self._inbox.request(subject, payload, timeout=self.config.timeout)
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as e:
                raise StoreUnavailableError(f"JetStream did not answer {subject}: {e!r}") from e

        return await self._retry(attempt)

    def _commit(self, address: Address, msg: Msg) -> Commit:
        headers = msg.headers or {}
        return decode_commit(address, int(headers.get("Nats-Sequence", 0)), msg.data, writer_of(headers))

    async def read(self, address: Address, *, after: int = 0, start: int = 0, leader: bool = False) -> list[Commit]:
        stream = await self.ensure_stream(address.namespace, address.context)
        if leader and stream not in self._one_copy:
            return await self._read_from_leader(stream, address, after, max(start, 1))
        commits: list[Commit] = []
        position = max(start, 1)
        while True:
            batch, pending = await self._retry(functools.partial(self._batch, stream, address, position))
            commits.extend(c.after(after) for c in batch if c.version > after)
            if not batch or pending == 0:
                break
            position = batch[-1].position + 1
            if pending > self.config.ordered_consumer_above:
                commits.extend(await self._replay(address, position, pending, after))
                break
        if commits:
            self._remember(commits[-1])
        return commits

    async def _read_from_leader(self, stream: str, address: Address, after: int, position: int) -> list[Commit]:
        """The commits from `position` on, as the stream's leader has them: one per round trip."""
        commits: list[Commit] = []
        while True:
            get = functools.partial(get_from_leader, self._js, stream, event_subject(address), from_seq=position)
            raw = await self._retry(get)
            if raw is None:
                return commits
            commit = decode_commit(address, raw.seq or 0, raw.data or b"", writer_of(raw.headers or {}))
            if commit.version > after:
                commits.append(commit.after(after))
            position = commit.position + 1

    async def _batch(self, stream: str, address: Address, position: int) -> tuple[list[Commit], int]:
        """One batched direct get: the commits from `position` on, and how many remain after them."""
        subject = event_subject(address)
        await self._inbox.listen()
        request = {"seq": position, "next_by_subj": subject, "batch": self.config.batch}
        commits: list[Commit] = []
        with self._inbox.replies() as (reply, queue):
            await self._nc.publish(direct_get(stream), _json.encode(request), reply=reply)
            while True:
                try:
                    msg = await _next_from(queue, self.config.timeout)
                except TimeoutError as e:
                    raise StoreUnavailableError(f"JetStream did not answer a read of {subject}") from e
                status = status_of(msg)
                if status == "404":
                    return commits, 0
                if status == "204":
                    return commits, int((msg.headers or {}).get("Nats-Num-Pending", 0))
                if status in ("503", "408"):  # no responders yet (a new or moving stream): transient
                    raise StoreUnavailableError(f"reading {subject}: {_describe(msg)}")
                if status is not None:
                    raise StoreError(f"reading {subject} failed: {_describe(msg)}")
                commits.append(self._commit(address, msg))

    async def _replay(self, address: Address, position: int, count: int, after: int) -> list[Commit]:
        """Read `count` commits from `position` on with an ordered consumer: fastest for long histories."""
        subject = event_subject(address)
        queue: asyncio.Queue[Msg] = asyncio.Queue()

        async def on_msg(msg: Msg) -> None:
            queue.put_nowait(msg)

        sub = await self._js.subscribe(
            subject,
            cb=on_msg,
            ordered_consumer=True,
            config=js_api.ConsumerConfig(deliver_policy=js_api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=position),
        )
        commits: list[Commit] = []
        try:
            while len(commits) < count:
                try:
                    msg = await _next_from(queue, self.config.timeout)
                except TimeoutError as e:
                    raise StoreUnavailableError(f"replay of {subject} stalled at {len(commits)}") from e
                commit = decode_commit(address, msg.metadata.sequence.stream, msg.data, writer_of(msg.headers))
                if commit.version > after:
                    commits.append(commit.after(after))
                if msg.metadata.num_pending == 0:
                    break
        finally:
            await sub.unsubscribe()
        return commits


async def _next_from(queue: asyncio.Queue[Msg], timeout: float) -> Msg:
    """The next message of `queue`: at once if one waits (most of a batch or a replay comes together), else
    within `timeout` (`TimeoutError`). `asyncio.wait_for` makes a task each time it is called: on a long
    read, one per message."""
    if not queue.empty():
        return queue.get_nowait()
    return await asyncio.wait_for(queue.get(), timeout)


def _describe(msg: Msg) -> str:
    headers = msg.headers or {}
    return f"status {headers.get('Status')} {headers.get('Description', '')}".strip()
