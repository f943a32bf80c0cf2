"""Where projections keep their read models: a JetStream KV bucket, or an SQL database (SQLite here).

Both keep, beside the model, a checkpoint per feed partition (the feed position of the last event
applied) and write it with the model's changes at once: the KV view in one atomic batch (ADR-50),
the SQLite view in one transaction. So a node that dies between applying events and acknowledging
them neither skips nor doubles one: the next owner starts after the checkpoint. Any other store
works the same way (`radix.domain.processing.ViewStore`).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

import msgspec
from nats.aio.client import Client as NATS

from radix import wire
from radix.domain.processing import Delete, KVView, Put, Record, SQLiteView, Update, View, ViewStore, Write
from radix.errors import CheckpointMovedError, DefinitionError, KeyChangedError, StoreError
from radix.store.kv import Entry, KVBucket
from radix.store.streams import ATOMIC_BATCH_LIMIT, publish_atomic
from radix.wire.names import kv_subject, view_bucket

__all__ = ["KVModel", "SQLiteModel", "open_kv", "open_view"]

#: The key prefixes of a KV view's checkpoints (`_checkpoint.{partition}`) and retried parked events
#: (`_parked.{key}`); a projection's own keys must not use them.
CHECKPOINT_PREFIX: Final = "_checkpoint."
PARKED_PREFIX: Final = "_parked."
_RESERVED: Final = (CHECKPOINT_PREFIX, PARKED_PREFIX)
#: Keys a KV view's model remembers the latest revision and value of (those it wrote or read last).
KNOWN_KEYS: Final = 65_536
#: Times a batch is computed again because keys it updated were written meanwhile by someone else.
_RECOMPUTES: Final = 10


async def open_view(
    into: KVView | SQLiteView | ViewStore, namespace: str, context: str, projection: str, nc: NATS
) -> View:
    """The read model a projection declared `into`, opened for one namespace's context."""
    if isinstance(into, KVView):
        return await open_kv(namespace, context, projection, nc, into)
    if isinstance(into, SQLiteView):
        model = SQLiteModel(into, f"{namespace}/{context}/{projection}")
        await model.connect()
        return model
    return await into.open(namespace, context, projection, nc)


async def open_kv(namespace: str, context: str, projection: str, nc: NATS, view: KVView | None = None) -> KVModel:
    """A `KVView` projection's model: its bucket, created (with atomic batches allowed) if missing. Also
    what a reader of the view uses (`await open_kv(ns, "inventory", "stock", nc)`, then `get`, `items`)."""
    view = view or KVView()
    name = view_bucket(namespace, context, projection)
    bucket = await KVBucket(nc, name, replicas=view.replicas, timeout=view.timeout).open()
    js = nc.jetstream(timeout=view.timeout)
    info = await js.stream_info(bucket.stream)
    if not info.config.allow_atomic:
        info.config.allow_atomic = True
        await js.update_stream(info.config)
    return KVModel(nc, bucket, view.timeout)


class KVModel:
    """One namespace's read model of a `KVView` projection, open.

    Every write of a batch that depends on a key's value (an `Update`) is checked by JetStream against
    the revision it was computed from (`Nats-Expected-Last-Subject-Sequence` in the atomic batch), and
    so is the checkpoint: two partitions updating one key never lose an update, and a reader that lost
    its partition (a node presumed dead, still running) cannot write after the next owner. The model
    remembers the revision and value of the keys it wrote or read lately (`KNOWN_KEYS`), so an update
    of a key it wrote last costs no read."""

    def __init__(self, nc: NATS, bucket: KVBucket, timeout: float) -> None:
        self._nc = nc
        self.bucket = bucket
        self._timeout = timeout
        self._known: dict[str, Entry] = {}

    def describe(self) -> str:
        return f"KV bucket {self.bucket.name}"

    async def checkpoint(self, partition: int) -> int:
        """The partition's checkpoint as the bucket's leader has it (a reset elsewhere may have removed it);
        the next batch expects it at that revision."""
        entry = await self.bucket.get(self._checkpoint_key(partition), leader=True)
        self._remember(entry)
        return int(entry.value) if entry.value else 0

    async def get(self, key: str) -> Any:
        """The value of `key` in the model (None if it has none)."""
        entry = await self.bucket.get(key, leader=True)
        return msgspec.json.decode(entry.value) if entry.value else None

    async def items(self) -> dict[str, Any]:
        """The whole model (checkpoints left out), by key: to compare a rebuild with the live view."""
        entries = await self.bucket.entries(timeout=self._timeout)
        return {
            e.key: msgspec.json.decode(e.value)
            for e in entries
            if e.value is not None and not e.key.startswith(_RESERVED)
        }

    async def apply(
        self, partition: int, records: Sequence[Record[Any]], handle: Callable[..., Any], *, parked: str | None = None
    ) -> None:
        """Write what `handle` returns for `records`, and the checkpoint (or the parked event's marker), as
        atomic batches of at most `ATOMIC_BATCH_LIMIT` keys, split only between feed messages (so the
        checkpoint never counts a message half written). A batch whose updated keys were written by someone
        else meanwhile is computed again from their new values; one whose checkpoint (or marker) was
        written by another writer is refused with `CheckpointMovedError`."""
        chunk: list[tuple[Record[Any], list[Write]]] = []
        keys: set[str] = set()
        for position, group in itertools.groupby(records, key=lambda r: r.position):
            message = [(record, _writes(handle(record))) for record in group]
            own = {w.key for _, writes in message for w in writes}
            if len(own) + 1 > ATOMIC_BATCH_LIMIT:
                raise DefinitionError(
                    f"the events at feed position {position} write {len(own)} keys; a KV projection writes at "
                    f"most {ATOMIC_BATCH_LIMIT - 1} for one stored commit"
                )
            if chunk and len(keys | own) + 1 > ATOMIC_BATCH_LIMIT:
                await self._commit(chunk, self._checkpoint_key(partition))
                chunk, keys = [], set()
            chunk.extend(message)
            keys |= own
        if chunk:
            await self._commit(chunk, f"{PARKED_PREFIX}{parked}" if parked else self._checkpoint_key(partition))

    async def _commit(self, chunk: list[tuple[Record[Any], list[Write]]], last: str) -> None:
        """One atomic batch: the chunk's writes, one message per key, then `last` (the checkpoint, which
        records the chunk's last position, or a parked event's marker, which must be absent), each expected at
        the revision read."""
        checkpoint = last.startswith(CHECKPOINT_PREFIX)
        for attempt in range(1, _RECOMPUTES + 1):
            staged: dict[str, bytes | None] = {}  # each key's value as the chunk leaves it (None: deleted)
            expected: dict[str, int] = {}  # the revision each value read was read at
            for _, writes in chunk:
                for write in writes:
                    staged[write.key] = await self._staged(write, staged, expected)
            fence = await self._read(last)
            if not checkpoint and fence.value is not None:
                return  # the parked event was applied already (by a reader racing this one)
            expected[last] = fence.revision
            staged[last] = str(chunk[-1][0].position).encode() if checkpoint else b"1"
            try:
                answer = await publish_atomic(self._nc, self._messages(staged, expected), timeout=self._timeout)
            except KeyChangedError:
                for key in staged:
                    self._known.pop(key, None)
                if (await self._read(last)).revision != expected[last]:
                    what = f"the checkpoint {last}" if checkpoint else f"the parked event {last} was applied and"
                    raise CheckpointMovedError(
                        f"{what} of {self.bucket.name} was written by another writer (a reader that lost its "
                        "partition, or a reset): this reader reads on from what is stored"
                    ) from None
                if attempt == _RECOMPUTES:
                    raise
                await asyncio.sleep(random.uniform(0, 0.001 * 2**attempt))  # let the other writer through
                continue
            first = int(answer.get("seq", 0)) - len(staged) + 1
            for revision, (key, value) in enumerate(staged.items(), start=first):
                self._remember(Entry(key, value, revision))
            return

    async def _staged(self, write: Write, staged: dict[str, bytes | None], expected: dict[str, int]) -> bytes | None:
        """The key's value after `write`, on the values `staged` so far (an update reads the key's value,
        and notes in `expected` the revision it read)."""
        if isinstance(write, Delete):
            return None
        if isinstance(write, Put):
            return msgspec.json.encode(write.value)
        assert isinstance(write, Update)
        if write.key in staged:
            raw = staged[write.key]
        else:
            entry = await self._read(write.key)
            expected[write.key], raw = entry.revision, entry.value
        before = msgspec.json.decode(raw) if raw else None
        if before is None:  # a copy: a `change` that alters its argument must leave the default as declared
            before = msgspec.json.decode(msgspec.json.encode(write.default))
        return msgspec.json.encode(write.change(before))

    def _messages(
        self, staged: dict[str, bytes | None], expected: dict[str, int]
    ) -> list[tuple[str, bytes, dict[str, str]]]:
        messages: list[tuple[str, bytes, dict[str, str]]] = []
        for key, value in staged.items():
            headers = {wire.H_EXPECTED_LAST_SUBJECT_SEQ: str(expected[key])} if key in expected else {}
            if value is None:
                headers["KV-Operation"] = "DEL"
            messages.append((kv_subject(self.bucket.name, key), value or b"", headers))
        return messages

    async def _read(self, key: str) -> Entry:
        """The key's latest entry: as this model last wrote or read it, else from the bucket's leader."""
        entry = self._known.get(key)
        if entry is None:
            entry = await self.bucket.get(key, leader=True)
            self._remember(entry)
        return entry

    def _remember(self, entry: Entry) -> None:
        known = self._known
        known.pop(entry.key, None)
        known[entry.key] = entry
        if len(known) > KNOWN_KEYS:
            del known[next(iter(known))]

    async def was_applied(self, parked: str) -> bool:
        return (await self.bucket.get(f"{PARKED_PREFIX}{parked}", leader=True)).value is not None

    @staticmethod
    def _checkpoint_key(partition: int) -> str:
        return f"{CHECKPOINT_PREFIX}{partition}"

    async def reset(self) -> None:
        self._known.clear()
        await self._nc.jetstream(timeout=self._timeout).purge_stream(self.bucket.stream)

    async def close(self) -> None:
        pass


def _writes(returned: Iterable[Write] | None) -> list[Write]:
    """What a KV projection's handler returned, checked: writes only, and none to Radix's own keys."""
    writes = list(returned or ())
    for write in writes:
        if not isinstance(write, Put | Delete | Update):
            raise DefinitionError(f"a KV projection returns Put, Delete and Update, not {write!r}")
        if write.key.startswith(_RESERVED):
            raise DefinitionError(f"a KV projection may not write {write.key!r}: keys {_RESERVED} are Radix's")
    return writes


class SQLiteModel:
    """One namespace's read model of an `SQLiteView` projection, open. Its connection is used from
    worker threads, one call at a time."""

    def __init__(self, view: SQLiteView, projection: str) -> None:
        self.view = view
        self.projection = projection
        self._db: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()

    def describe(self) -> str:
        return self.view.describe()

    async def connect(self) -> None:
        self._db = await asyncio.to_thread(self._connect)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.view.path, isolation_level=None, check_same_thread=False, timeout=30.0)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(
            "CREATE TABLE IF NOT EXISTS radix_checkpoints "
            "(projection TEXT NOT NULL, partition INTEGER NOT NULL, position INTEGER NOT NULL, "
            "PRIMARY KEY (projection, partition))"
        )
        db.execute(
            "CREATE TABLE IF NOT EXISTS radix_parked_applied "
            "(projection TEXT NOT NULL, key TEXT NOT NULL, PRIMARY KEY (projection, key))"
        )
        if self.view.schema:
            db.executescript(self.view.schema)
        return db

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError(f"the SQLite view {self.view.path} is not open")
        return self._db

    async def _run(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run `work` on the connection in a worker thread, one at a time. A caller cancelled meanwhile (its
        partition handed over) still holds the turn until the thread is done: the connection is not
        safe to use from two threads at once."""
        async with self._lock:
            running = asyncio.get_running_loop().run_in_executor(None, work, self.db)
            try:
                return await asyncio.shield(running)
            except asyncio.CancelledError:
                await asyncio.wait([running])
                raise

    async def checkpoint(self, partition: int) -> int:
        query = "SELECT position FROM radix_checkpoints WHERE projection = ? AND partition = ?"
        row = await self._run(lambda db: db.execute(query, (self.projection, partition)).fetchone())
        return int(row[0]) if row else 0

    async def apply(
        self, partition: int, records: Sequence[Record[Any]], handle: Callable[..., Any], *, parked: str | None = None
    ) -> None:
        if not records:
            return

        def apply(db: sqlite3.Connection) -> None:
            with _transaction(db):
                for record in records:
                    handle(record, db)
                if parked:
                    db.execute("INSERT INTO radix_parked_applied VALUES (?, ?)", (self.projection, parked))
                else:
                    db.execute(
                        "INSERT INTO radix_checkpoints (projection, partition, position) VALUES (?, ?, ?) "
                        "ON CONFLICT (projection, partition) DO UPDATE SET position = excluded.position",
                        (self.projection, partition, records[-1].position),
                    )

        await self._run(apply)

    async def was_applied(self, parked: str) -> bool:
        query = "SELECT 1 FROM radix_parked_applied WHERE projection = ? AND key = ?"
        return await self._run(lambda db: db.execute(query, (self.projection, parked)).fetchone()) is not None

    async def reset(self) -> None:
        def reset(db: sqlite3.Connection) -> None:
            with _transaction(db):
                for table in self.view.tables:
                    db.execute(f'DELETE FROM "{table}"')  # the projection's own tables
                db.execute("DELETE FROM radix_checkpoints WHERE projection = ?", (self.projection,))
                db.execute("DELETE FROM radix_parked_applied WHERE projection = ?", (self.projection,))

        await self._run(reset)

    async def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            await asyncio.to_thread(db.close)


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK if anything raised."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")
