"""Creating JetStream streams idempotently, shared by every part that owns one."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, Generic, TypeVar

import nats.errors
from nats.aio.client import Client as NATS
from nats.js import api as js_api
from nats.js import errors as js_errors
from nats.js.client import JetStreamContext

from radix.errors import KeyChangedError, RadixError, StoreError, StoreUnavailableError
from radix.observability.logs import logger

T = TypeVar("T")

#: A fenced write whose expected last sequence was not the subject's (or key's) last sequence.
ERR_WRONG_LAST_SEQUENCE = 10071
#: The same answer from a replicated stream while another write to the subject is still being
#: proposed (nats-server 2.14 on): nothing was stored, and the same write may be sent again.
ERR_WRITE_IN_FLIGHT = 10164
#: A replicated stream could not be placed: a peer is offline, or back (a restart, a healed
#: partition) but not yet current with the meta leader. It clears once the leader sees the peer.
ERR_NO_SUITABLE_PEERS = 10005
#: A stream of that name exists with another configuration.
ERR_STREAM_NAME_IN_USE = 10058
_IN_FLIGHT_PAUSES = (0.004, 0.008, 0.016, 0.032, 0.064)


def wrong_last_sequence(err_code: object) -> bool:
    """Whether a refused write's error code says its expected sequence no longer holds."""
    return err_code in (ERR_WRONG_LAST_SEQUENCE, ERR_WRITE_IN_FLIGHT)


async def publish_settled(
    send: Callable[[], Awaitable[T]], err_code: Callable[[T], object], *, first: T | None = None
) -> T:
    """Send a fenced write, and again after short pauses while the server answers that another write
    to the same subject is in flight; the last answer is returned as it is. `first`: the answer to a
    send made already (the hot path's own), taken as the first."""
    ack = await send() if first is None else first
    for pause in _IN_FLIGHT_PAUSES:
        if err_code(ack) != ERR_WRITE_IN_FLIGHT:
            break
        await asyncio.sleep(pause)
        ack = await send()
    return ack


#: What a JetStream cluster answers (or fails to) while it elects leaders or restarts a server.
NOT_ANSWERING = (nats.errors.TimeoutError, nats.errors.NoRespondersError, js_errors.ServiceUnavailableError)


async def with_backoff(
    attempt: Callable[[], Awaitable[T]],
    *,
    retry_on: tuple[type[BaseException], ...],
    wait: float,
    delay: float = 0.05,
) -> T:
    """Run `attempt`, again with doubling pauses (up to 1 s) while it raises `retry_on`, for up to `wait` s."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return await attempt()
        except retry_on:
            if time.monotonic() + delay > deadline:
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)


class _NotPlacedYet(RadixError):
    """JetStream answered that it cannot place the replicas yet (`ERR_NO_SUITABLE_PEERS`)."""


async def while_unanswered(setup: Callable[[], Awaitable[T]], *, what: str, wait: float = 30.0) -> T:
    """Run an idempotent setup request (`what`, to say what waits), again for up to `wait` seconds while
    JetStream does not answer or cannot place replicas yet: several nodes creating R3 streams at once,
    a server restarting, a peer just back from a partition.

    Still failing so after `wait` seconds is a `StoreUnavailableError` that says what to check; any other
    refusal (a replicated stream on a single server, an account's limits) is a `StoreError` at once.
    """
    waiting = False

    async def attempt() -> T:
        nonlocal waiting
        try:
            return await setup()
        except js_errors.BadRequestError as e:
            if e.err_code != ERR_NO_SUITABLE_PEERS:
                raise
            if not waiting:
                logger.warning("waiting for jetstream to place replicas", what=what, answer=e.description)
            waiting = True
            raise _NotPlacedYet(e.description) from e

    try:
        return await with_backoff(attempt, retry_on=(*NOT_ANSWERING, _NotPlacedYet), wait=wait, delay=0.1)
    except (*NOT_ANSWERING, _NotPlacedYet) as e:
        answer = str(e) or type(e).__name__
        raise StoreUnavailableError(
            f"JetStream could not {what} within {wait:g}s ({answer}): check that the servers are up and "
            "routed to each other, and that as many run JetStream as the replicas asked for (--replicas)"
        ) from e
    except js_errors.APIError as e:
        raise StoreError(f"JetStream refused to {what}: {e.description} (error {e.err_code})") from e


async def all_streams(js: JetStreamContext) -> list[js_api.StreamInfo]:
    """Every stream of the account: the server lists them a page (256) at a time."""
    streams: list[js_api.StreamInfo] = []
    while page := await js.streams_info(offset=len(streams)):
        streams.extend(page)
    return streams


async def get_from_leader(
    js: JetStreamContext, stream: str, subject: str, *, from_seq: int | None = None
) -> js_api.RawStreamMsg | None:
    """The last message on `subject`, or with `from_seq` the first at or after that sequence, as the
    stream's leader has it; None if there is none.

    A direct get may be answered by a replica that lags; this read is not. Not answering is a
    `StoreUnavailableError`.
    """
    try:
        if from_seq is None:
            return await js.get_msg(stream, subject=subject)
        return await js.get_msg(stream, seq=max(from_seq, 1), subject=subject, next=True)
    except js_errors.NotFoundError:
        return None
    except NOT_ANSWERING as e:
        raise StoreUnavailableError(f"the leader of {stream} did not answer for {subject}: {e!r}") from e


async def ensure_stream(js: JetStreamContext, config: js_api.StreamConfig) -> js_api.StreamInfo:
    """The stream named in `config`, created with it unless it exists (as created by anyone)."""
    assert config.name is not None
    return await existing_or_created(
        js, config.name, lambda: js.add_stream(config), what=f"create stream {config.name}"
    )


#: Looks at a stream just made before its absence is taken as final (0.1 s apart).
_LOOKS: Final = 20


async def existing_or_created(
    js: JetStreamContext, stream: str, create: Callable[[], Awaitable[object]], *, what: str
) -> js_api.StreamInfo:
    """The stream `stream` as it is, made first with `create()` unless it exists: a stream of that
    name made meanwhile (by another node, or an older version) is taken as it is. Waited for while
    JetStream does not answer or cannot place it yet (`while_unanswered`, saying `what` waits)."""

    async def setup() -> js_api.StreamInfo:
        try:
            return await js.stream_info(stream)
        except js_errors.NotFoundError:
            pass
        try:
            await create()
        except js_errors.BadRequestError as e:
            if e.err_code != ERR_STREAM_NAME_IN_USE:
                raise
        except js_errors.NotFoundError:
            pass  # made, but not yet known to the server that answered the look that follows it: look again
        for _ in range(_LOOKS):
            try:
                return await js.stream_info(stream)
            except js_errors.NotFoundError:  # in a cluster, a stream just made is known everywhere a moment later
                await asyncio.sleep(0.1)
        return await js.stream_info(stream)

    return await while_unanswered(setup, what=what)


K = TypeVar("K")
V = TypeVar("V")


class Once(Generic[K, V]):
    """Runs one setup per key (creating a stream, opening a bucket) at most once at a time, and remembers its result.

    The first caller runs the setup in its own task; callers meanwhile wait for its outcome. A failed
    setup is forgotten, so the next call tries again; if the caller running it is cancelled, a waiter
    runs it anew. Once done, a call costs a dictionary lookup: it sits on the append path.
    """

    def __init__(self, setup: Callable[[K], Awaitable[V]]) -> None:
        self._setup = setup
        self._done: dict[K, V] = {}
        self._pending: dict[K, asyncio.Future[V]] = {}

    async def get(self, key: K) -> V:
        while key not in self._done:
            pending = self._pending.get(key)
            if pending is None:
                return await self._run(key)
            try:
                return await asyncio.shield(pending)
            except _Abandoned:
                continue  # its runner was cancelled: run it here
        return self._done[key]

    async def _run(self, key: K) -> V:
        outcome: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        outcome.add_done_callback(_retrieved)
        self._pending[key] = outcome
        try:
            value = self._done[key] = await self._setup(key)
        except asyncio.CancelledError:
            outcome.set_exception(_Abandoned())
            raise
        except BaseException as e:
            outcome.set_exception(e)
            raise
        else:
            outcome.set_result(value)
            return value
        finally:
            del self._pending[key]

    def close(self) -> None:
        """Forget results (setups in flight finish in their callers' tasks)."""
        self._done.clear()


class _Abandoned(RadixError):
    """The task running a setup was cancelled before it finished."""


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # waited for or not, a failed setup is no unretrieved error


#: At most this many messages in one atomic batch (ADR-50).
ATOMIC_BATCH_LIMIT: Final = 1000


async def publish_atomic(
    nc: NATS, messages: Sequence[tuple[str, bytes, dict[str, str]]], *, timeout: float
) -> dict[str, Any]:
    """Publish `messages` (subject, data, headers) to one stream as one atomic batch (ADR-50): all are
    stored or none is. The stream needs `allow_atomic`. Returns the server's acknowledgement of the
    batch; a refusal is a `StoreError` (`KeyChangedError` if an expected sequence of a message no longer
    held), no answer a `StoreUnavailableError` (it may or may not be stored)."""
    if not 0 < len(messages) <= ATOMIC_BATCH_LIMIT:
        raise StoreError(f"an atomic batch holds 1 to {ATOMIC_BATCH_LIMIT} messages, not {len(messages)}")
    batch = uuid.uuid4().hex
    *first, (subject, data, headers) = messages
    for sequence, (each_subject, each_data, each_headers) in enumerate(first, start=1):
        marked = {**each_headers, "Nats-Batch-Id": batch, "Nats-Batch-Sequence": str(sequence)}
        await nc.publish(each_subject, each_data, headers=marked)
    last = {**headers, "Nats-Batch-Id": batch, "Nats-Batch-Sequence": str(len(messages)), "Nats-Batch-Commit": "1"}
    try:
        reply = await nc.request(subject, data, timeout=timeout, headers=last)
    except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as e:
        raise StoreUnavailableError(f"JetStream did not answer an atomic batch on {subject}: {e!r}") from e
    answer: dict[str, Any] = json.loads(reply.data) if reply.data else {}
    if "error" in answer:
        error = answer["error"]
        if wrong_last_sequence(error.get("err_code")):
            actual = str(error.get("description", "")).rpartition(" ")[2]
            raise KeyChangedError(subject, int(actual) if actual.isdigit() else -1)
        raise StoreError(
            f"JetStream refused an atomic batch on {subject}: {error.get('description')} "
            f"(error {error.get('err_code')})"
        )
    return answer
