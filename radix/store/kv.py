"""A small JetStream key-value layer for leases and liveness, on raw JetStream operations.

nats-py's KV has traps for exactly this use (DESIGN.md §7): a key whose per-key TTL
expired leaves a marker that `get` returns as an entry with no value and that makes
`create` fail; `update` drops a key's TTL; a watcher's "initial values done" can come
early. This layer treats every marker and delete as absent (with the revision to
compare-and-set on), renews TTL'd keys with a fenced publish carrying `Nats-TTL`, and
watches with an ordered consumer. Buckets are created as nats-py creates them, so
`nats kv` tools read them.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Final

import msgspec
import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import api as js_api

from radix import wire
from radix.errors import InvalidArgumentError, KeyChangedError, StoreError, StoreUnavailableError
from radix.store.streams import (
    Once,
    existing_or_created,
    get_from_leader,
    publish_settled,
    with_backoff,
    wrong_last_sequence,
)
from radix.transport.inbox import Inbox, status_of
from radix.wire.names import direct_get, kv_filter, kv_stream, kv_subject

__all__ = ["OPERATIONS", "Entry", "KVBucket", "NamespaceBuckets"]

#: KV operations of this process, by kind: `read` (a get), `write` (a put, create or delete) and `delivered`
#: (an entry a watch delivered). What the placement model (`radix.tools.placesim`) counts cluster-wide.
OPERATIONS: Counter[str] = Counter()

_DELETE_OPS: Final = ("DEL", "PURGE")
MARKER_TTL: Final = 60  # how long the server keeps the marker of an expired key, in seconds


@dataclass(frozen=True, slots=True)
class Entry:
    """A key's latest message: its value (None when deleted or expired) and revision (stream sequence)."""

    key: str
    value: bytes | None
    revision: int


class _Ack(msgspec.Struct):
    seq: int = 0
    error: dict[str, object] | None = None


_ack_decoder: Final = msgspec.json.Decoder(_Ack)


def _is_absent(headers: dict[str, str] | None, data: bytes | None) -> bool:
    headers = headers or {}
    return (
        "Nats-Marker-Reason" in headers
        or headers.get("KV-Operation") in _DELETE_OPS
        or (not data and "Status" in headers)
    )


class KVBucket:
    """One KV bucket, opened (and created if missing) with `open()`."""

    def __init__(self, nc: NATS, name: str, *, replicas: int = 1, timeout: float = 5.0) -> None:
        self._nc = nc
        self.name = name
        self.stream = kv_stream(name)
        self._prefix = kv_subject(name, "")
        self._replicas = replicas
        self._timeout = timeout
        self._one_copy = False  # one replica: a direct get is the leader's answer

    async def open(self) -> KVBucket:
        """Create the bucket unless it exists (with per-key TTLs and expiry markers on)."""
        js = self._nc.jetstream(timeout=self._timeout)
        config = js_api.KeyValueConfig(
            bucket=self.name,
            history=1,
            storage=js_api.StorageType.FILE,
            replicas=self._replicas,
            direct=True,
            limit_marker_ttl=MARKER_TTL,
        )
        info = await existing_or_created(
            js, self.stream, lambda: js.create_key_value(config), what=f"create bucket {self.name}"
        )
        self._one_copy = info.config.num_replicas == 1
        return self

    async def _request(self, subject: str, payload: bytes, headers: dict[str, str] | None) -> Msg:
        # "No responders" means nobody received the request (a new bucket, or one electing a
        # leader): sending it again is safe, for a while. A time-out is not retried: the
        # request may have been carried out.
        try:
            return await with_backoff(
                lambda: Inbox.of(self._nc).request(subject, payload, timeout=self._timeout, headers=headers),
                retry_on=(nats.errors.NoRespondersError,),
                wait=self._timeout,
            )
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as e:
            raise StoreUnavailableError(f"JetStream did not answer on {subject}: {e!r}") from e

    async def get(self, key: str, *, leader: bool = False) -> Entry:
        """The key's latest entry; `value` is None if it never existed (revision 0), was deleted or expired.

        By default any replica answers (a direct get: fast, but a replica that lags, as one cut off
        from its peers does, answers from the past). `leader=True` asks the bucket's leader: what a
        decision that must not act on stale ownership needs (with a single replica, a direct get is
        the leader's answer, and is used).
        """
        OPERATIONS["read"] += 1
        if leader and not self._one_copy:
            return await self._get_from_leader(key)
        msg = await self._request(direct_get(self.stream, self._prefix + key), b"", None)
        headers = msg.headers or {}
        status = status_of(msg)
        if status == "404":
            return Entry(key, None, 0)
        if status is not None:
            raise StoreError(f"reading {key} from {self.name} failed: {headers.get('Description', '')}")
        revision = int(headers.get("Nats-Sequence", 0))
        return Entry(key, None if _is_absent(msg.headers, msg.data) else msg.data, revision)

    async def _get_from_leader(self, key: str) -> Entry:
        js = self._nc.jetstream(timeout=self._timeout)
        raw = await with_backoff(
            lambda: get_from_leader(js, self.stream, self._prefix + key),
            retry_on=(StoreUnavailableError,),
            wait=self._timeout,
        )
        if raw is None:
            return Entry(key, None, 0)
        headers = raw.headers or {}
        return Entry(key, None if _is_absent(headers, raw.data) else raw.data, raw.seq or 0)

    async def put_if(self, key: str, value: bytes, *, revision: int, ttl: int | None = None) -> int:
        """Write `value` if the key is at `revision` (0: never written); return the new revision.

        Raises `KeyChangedError` with the key's actual revision otherwise. A `ttl` (whole
        seconds, at least 1) makes the key expire unless written again in time.
        """
        headers = {wire.H_EXPECTED_LAST_SUBJECT_SEQ: str(revision)}
        if ttl is not None:
            if ttl < 1:
                raise InvalidArgumentError(f"a key's TTL is whole seconds, at least 1, not {ttl}")
            headers[wire.H_TTL] = f"{ttl}s"
        return await self._publish(key, value, headers)

    async def put(self, key: str, value: bytes) -> int:
        """Write `value` whatever the key's revision; return the new revision."""
        return await self._publish(key, value, {})

    async def create(self, key: str, value: bytes, *, ttl: int | None = None) -> int:
        """Write `value` if the key is absent (never written, deleted or expired); return the new revision."""
        try:
            return await self.put_if(key, value, revision=0, ttl=ttl)
        except KeyChangedError:
            # From the leader, which refused the write: a replica that lags may still show a value since
            # deleted or expired, and a create that trusted it would be refused until the replica caught up.
            entry = await self.get(key, leader=True)
            if entry.value is not None:
                raise KeyChangedError(key, entry.revision) from None
            return await self.put_if(key, value, revision=entry.revision, ttl=ttl)

    async def delete_if(self, key: str, *, revision: int) -> int:
        """Delete the key if it is at `revision`; return the delete's revision. `KeyChangedError` otherwise."""
        return await self._publish(key, b"", {wire.H_EXPECTED_LAST_SUBJECT_SEQ: str(revision), "KV-Operation": "DEL"})

    async def _publish(self, key: str, value: bytes, headers: dict[str, str]) -> int:
        OPERATIONS["write"] += 1

        async def send() -> _Ack:
            msg = await self._request(self._prefix + key, value, headers or None)
            return _ack_decoder.decode(msg.data)

        ack = await publish_settled(send, lambda a: a.error.get("err_code") if a.error else None)
        if ack.error is not None:
            if wrong_last_sequence(ack.error.get("err_code")):
                description = str(ack.error.get("description", ""))
                actual = description.rpartition(" ")[2]
                raise KeyChangedError(key, int(actual) if actual.isdigit() else -1)
            raise StoreError(f"writing {key} to {self.name} failed: {ack.error.get('description')}")
        return ack.seq

    async def entries(self, *, timeout: float | None = None) -> list[Entry]:
        """Every key's latest entry as the bucket holds it now (deleted and expired keys left out), in key order.

        Read with the watch below (an ordered consumer, last entry per key), stopped once what existed
        when it started has come; `StoreUnavailableError` if that takes longer than `timeout`.
        """
        ready = asyncio.Event()
        found: dict[str, Entry] = {}

        async def collect() -> None:
            async for entry in self.watch(ready):
                found[entry.key] = entry

        collecting = asyncio.create_task(collect())
        waiting = asyncio.create_task(ready.wait())
        try:
            done, _ = await asyncio.wait(
                [collecting, waiting], timeout=timeout or self._timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if collecting in done:
                collecting.result()  # raises what failed
            if not done:
                raise StoreUnavailableError(
                    f"the entries of {self.name} did not come within {timeout or self._timeout}s"
                )
        finally:
            await _ended(collecting, waiting)
        return [found[key] for key in sorted(found) if found[key].value is not None]

    async def watch(self, ready: asyncio.Event | None = None) -> AsyncIterator[Entry]:
        """Every key's latest entry, then every change, as it happens (deletes and expiries as value None).

        `ready` is set once the entries that existed when the watch started have been
        delivered (judged by the stream's last sequence, not by the consumer's own
        signal, which can come early).
        """
        js = self._nc.jetstream(timeout=self._timeout)
        info = await js.stream_info(self.stream)
        last = info.state.last_seq
        queue: asyncio.Queue[Msg] = asyncio.Queue()

        async def on_msg(msg: Msg) -> None:
            queue.put_nowait(msg)

        sub = await js.subscribe(
            kv_filter(self.name),
            cb=on_msg,
            ordered_consumer=True,
            deliver_policy=js_api.DeliverPolicy.LAST_PER_SUBJECT,
            idle_heartbeat=2.0,
        )
        try:
            if ready is not None and last == 0:
                ready.set()
            while True:
                msg = await queue.get()
                sequence = msg.metadata.sequence.stream
                OPERATIONS["delivered"] += 1
                yield Entry(
                    msg.subject[len(self._prefix) :], None if _is_absent(msg.headers, msg.data) else msg.data, sequence
                )
                if ready is not None and not ready.is_set() and (sequence >= last or msg.metadata.num_pending == 0):
                    ready.set()
        finally:
            if not self._nc.is_closed:
                await sub.unsubscribe()


async def _ended(*tasks: asyncio.Task[Any]) -> None:
    """Cancel `tasks` and wait until each has ended, cancelling again one that went on: Python 3.11's
    `asyncio.wait_for` (under nats-py's requests) can lose a cancellation that lands just as what it waits
    for completes, and a watch's task then waits for its next entry for ever (a reader's stop hung on it)."""
    while pending := [task for task in tasks if not task.done()]:
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=0.25)
    for task in tasks:
        if not task.cancelled():
            task.exception()  # retrieved: nothing is logged as never retrieved


class NamespaceBuckets:
    """One bucket per namespace (snapshots, refusals), opened and created on first use."""

    def __init__(self, nc: NATS, name: Callable[[str], str], *, replicas: int, timeout: float) -> None:
        self._nc = nc
        self._name = name
        self._replicas = replicas
        self._timeout = timeout
        self._buckets: Once[str, KVBucket] = Once(self._open)

    async def get(self, namespace: str) -> KVBucket:
        return await self._buckets.get(namespace)

    async def _open(self, namespace: str) -> KVBucket:
        return await KVBucket(self._nc, self._name(namespace), replicas=self._replicas, timeout=self._timeout).open()

    def close(self) -> None:
        """Forget opened buckets. Safe to call twice."""
        self._buckets.close()
