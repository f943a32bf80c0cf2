"""Reactions and projections on a real nats-server: partitions spread over nodes, commands applied once,
views with checkpoints, parked events. Several nodes in this process here; node processes killed with
kill -9 in test_processing_processes.py."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from radix import Client, EmbeddedNats, Node, NodeConfig, PlacementConfig, Record, projection
from radix.domain import BoundedContext, KVView, View
from radix.domain.processing import Projection, Write
from radix.errors import CheckpointMovedError
from radix.examples.inventory import CheckIn, CreateItem, ItemCreated, inventory
from radix.runtime.config import ProcessingConfig
from radix.runtime.partition import Partition, PartitionReader, Unit
from radix.store import JetStreamEventStore
from radix.store.feed import Cursor, Feed
from radix.store.parked import ParkedStore
from radix.store.views import KVModel, open_kv, open_view
from radix.testing import eventually
from radix.wire.names import Address, feed_stream, processor_consumer_prefix
from tests import processing
from tests.processing import inventory_with, ledger, note, stock_into, stock_sql, stock_writes
from tests.reading import log_entries

FAST = ProcessingConfig(partitions=4, interval=0.2, retry_delay=0.05)


class Nodes:
    """Nodes in this process, each with a connection of its own, serving `contexts` in one namespace."""

    def __init__(self, server: EmbeddedNats, namespace: str, stack: AsyncExitStack) -> None:
        self.server, self.namespace, self.stack = server, namespace, stack
        self.nodes: dict[str, Node] = {}

    async def start(self, node_id: str, contexts: Sequence[BoundedContext]) -> Node:
        nc = await nats.connect(self.server.url)
        self.stack.push_async_callback(nc.close)
        config = NodeConfig(node_id=node_id, processing=FAST, placement=PlacementConfig(liveness_ttl=2))
        node = Node({self.namespace: list(contexts)}, nats=nc, config=config)
        await node.start()
        self.stack.push_async_callback(node.stop)
        self.nodes[node_id] = node
        return node

    def owned(self) -> dict[str, set[tuple[str, int]]]:
        return {i: {(r["name"], r["partition"]) for r in n.status().processors} for i, n in self.nodes.items()}


@pytest.fixture
async def nodes(nats_server: EmbeddedNats, namespace: str) -> AsyncIterator[Nodes]:
    async with AsyncExitStack() as stack:
        yield Nodes(nats_server, namespace, stack)


async def noted(nc: NATS, namespace: str) -> list[processing.Noted]:
    """What the ledger noted, in order."""
    async with JetStreamEventStore(nc) as store:
        commits = await store.read(Address(namespace, "ledger", "Ledger", "all"))
    codec = ledger.codec("Ledger")
    events = [codec.decode_event(e.type, e.schema, e.data) for c in commits for e in c.events]
    return [e for e in events if isinstance(e, processing.Noted)]


async def check_ins(nc: NATS, namespace: str, items: int, rounds: int) -> None:
    client = Client(nc, inventory, namespace=namespace)
    for i in range(items):
        await client.send(CreateItem(name=f"item {i}"), aggregate_id=f"i-{i}")
    for r in range(rounds):
        for i in range(items):
            await client.send(CheckIn(count=r + 1), aggregate_id=f"i-{i}")


def assert_noted_once_in_order(notes: list[processing.Noted], items: int, rounds: int) -> None:
    assert sorted((n.source, n.version) for n in notes) == sorted(
        (f"i-{i}", v) for i in range(items) for v in range(2, rounds + 2)
    )
    for i in range(items):
        assert [n.version for n in notes if n.source == f"i-{i}"] == list(range(2, rounds + 2))


async def test_a_reaction_sends_one_command_per_event_spread_over_the_nodes(
    nodes: Nodes, nc: NATS, namespace: str
) -> None:
    """Every check-in is noted once, in its aggregate's order, by whichever node owns its partition; the
    command names its cause and keeps the correlation of the command that caused the event."""
    contexts = [inventory_with(note), ledger]
    await nodes.start("p1", contexts)
    await nodes.start("p2", contexts)
    await eventually(lambda: all(nodes.owned().values()), what="both nodes owning partitions")
    await check_ins(nc, namespace, items=8, rounds=3)
    await eventually(lambda: _count(nc, namespace, 24), timeout=20, what="24 check-ins noted")
    assert_noted_once_in_order(await noted(nc, namespace), items=8, rounds=3)
    owned = nodes.owned()
    assert owned["p1"].isdisjoint(owned["p2"])
    assert owned["p1"] | owned["p2"] == {("note-check-ins", p) for p in range(4)}
    entries = await log_entries(nc, namespace, 24, context="ledger")
    assert {e.issuer for e in entries} == {"reaction:note-check-ins"}
    assert all(e.causation_id is not None and e.causation_id.startswith("inventory/InventoryItem/i-") for e in entries)
    checked_in = {e.command_id for e in await log_entries(nc, namespace, 32) if e.type == "CheckIn"}
    assert {e.correlation_id for e in entries} <= checked_in


async def _count(nc: NATS, namespace: str, expected: int) -> bool:
    return len(await noted(nc, namespace)) >= expected


async def test_events_read_again_apply_no_command_twice(nodes: Nodes, nc: NATS, namespace: str) -> None:
    """The feed read again from its start (the acknowledged position lost): every command is sent again
    with the id it had, and the ledger notes each check-in once."""
    contexts = [inventory_with(note), ledger]
    first = await nodes.start("p1", contexts)
    await check_ins(nc, namespace, items=4, rounds=2)
    await eventually(lambda: _count(nc, namespace, 8), timeout=20, what="8 check-ins noted")
    await first.stop()
    js = nc.jetstream()
    stream = feed_stream(namespace, "inventory")
    for consumer in await js.consumers_info(stream):
        if any((consumer.name or "").startswith(processor_consumer_prefix("note-check-ins", p)) for p in range(4)):
            await js.delete_consumer(stream, consumer.name or "")
    again = await nodes.start("p2", contexts)
    await eventually(
        lambda: sum(r["handled"] for r in again.status().processors) >= 8, timeout=20, what="the feed read again"
    )
    assert_noted_once_in_order(await noted(nc, namespace), items=4, rounds=2)


async def test_projections_rebuilt_from_the_start_equal_the_live_ones(
    nodes: Nodes, nc: NATS, namespace: str, tmp_path: Path
) -> None:
    """A KV view and an SQLite table kept live by two nodes; the same projections added later catch up
    from the feed's start and hold the same model, row for row."""
    database = tmp_path / "stock.db"
    live = inventory_with(stock_into("stock"), stock_sql(database))
    await nodes.start("p1", [live])
    await nodes.start("p2", [live])
    await check_ins(nc, namespace, items=10, rounds=3)
    expected = {f"i-{i}": {"name": f"item {i}", "count": 6, "version": 4} for i in range(10)}
    model = await open_kv(namespace, "inventory", "stock", nc)
    await eventually(lambda: _items(model, expected), timeout=20, what="the live KV view")
    await eventually(lambda: _rows_are(database, _expected_rows(10)), timeout=20, what="the live SQLite table")
    for node in list(nodes.nodes.values()):
        await node.stop()
    rebuilt = inventory_with(
        stock_into("stock"), stock_into("stock-again"), stock_sql(database), stock_sql(tmp_path / "again.db", "again")
    )
    await nodes.start("p3", [rebuilt])
    again = await open_kv(namespace, "inventory", "stock-again", nc)
    await eventually(lambda: _items(again, expected), timeout=20, what="the rebuilt KV view")
    assert await again.items() == await model.items()
    live_rows = await _rows(database)
    await eventually(lambda: _rows_are(tmp_path / "again.db", live_rows), timeout=20, what="the rebuilt table")


async def _items(model: KVModel, expected: dict[str, Any]) -> bool:
    return await model.items() == expected


async def _rows(path: Path) -> list[tuple[Any, ...]]:
    """The stock table as the file holds it (read in a thread: the nodes share this event loop)."""

    def read() -> list[tuple[Any, ...]]:
        if not path.exists():
            return []
        db = sqlite3.connect(path)
        try:
            return db.execute("SELECT item, name, count FROM stock ORDER BY item").fetchall()
        except sqlite3.OperationalError:
            return []
        finally:
            db.close()

    return await asyncio.to_thread(read)


async def _rows_are(path: Path, expected: list[tuple[Any, ...]]) -> bool:
    return await _rows(path) == expected


def _expected_rows(items: int) -> list[tuple[Any, ...]]:
    return sorted((f"i-{i}", f"item {i}", 6) for i in range(items))


class Killed(BaseException):
    """What kills the partition's reader, as a node killed there: nothing in Radix handles it."""


class CrashingOnce:
    """A view store whose view dies once right after a batch is written, before it is acknowledged: what a
    node killed between the two does to the reader (which the supervisor then starts again)."""

    def __init__(self, inner: KVView) -> None:
        self.inner = inner
        self.crashed = 0

    def describe(self) -> str:
        return self.inner.describe()

    async def open(self, namespace: str, context: str, projection: str, connection: Any) -> View:
        view = await open_view(self.inner, namespace, context, projection, connection)
        crashing = self

        class Crashing:
            def describe(self) -> str:
                return view.describe()

            async def checkpoint(self, partition: int) -> int:
                return await view.checkpoint(partition)

            async def apply(
                self,
                partition: int,
                records: Sequence[Record[Any]],
                handle: Callable[..., Any],
                *,
                parked: str | None = None,
            ) -> None:
                await view.apply(partition, records, handle, parked=parked)
                if not crashing.crashed:
                    crashing.crashed += 1
                    raise Killed("after the write, before the acknowledgement")

            async def was_applied(self, parked: str) -> bool:
                return await view.was_applied(parked)

            async def reset(self) -> None:
                await view.reset()

            async def close(self) -> None:
                await view.close()

        return Crashing()


async def test_a_crash_between_the_view_write_and_the_acknowledgement_neither_skips_nor_doubles(
    nodes: Nodes, nc: NATS, namespace: str
) -> None:
    store = CrashingOnce(KVView())
    crashing = projection("stock", into=store, on=[])(stock_writes)
    node = await nodes.start("p1", [inventory_with(crashing)])
    await check_ins(nc, namespace, items=6, rounds=3)
    expected = {f"i-{i}": {"name": f"item {i}", "count": 6, "version": 4} for i in range(6)}
    model = await open_kv(namespace, "inventory", "stock", nc)
    await eventually(lambda: _items(model, expected), timeout=20, what="the view, once")
    assert store.crashed == 1
    assert node.status().processors  # the partition was taken up again after its reader died


async def test_a_poison_event_is_parked_holds_back_its_aggregate_only_and_is_retried_after_a_fix(
    nodes: Nodes, nc: NATS, namespace: str
) -> None:
    broken = {"i-1"}

    def fragile(record: Record[Any]) -> list[Write]:
        if record.aggregate_id in broken:
            raise ValueError(f"cannot project {record.aggregate_id}")
        return stock_writes(record)

    poisoned: Projection = projection("stock", into=KVView(), attempts=2)(fragile)
    node = await nodes.start("p1", [inventory_with(poisoned)])
    await check_ins(nc, namespace, items=3, rounds=2)
    model = await open_kv(namespace, "inventory", "stock", nc)
    others = {f"i-{i}": {"name": f"item {i}", "count": 3, "version": 3} for i in (0, 2)}
    await eventually(lambda: _items(model, others), timeout=20, what="the other aggregates projected")
    parked = ParkedStore(nc)

    async def three_parked() -> bool:
        return len(await parked.of(namespace, "inventory", "stock")) == 3

    await eventually(three_parked, timeout=20, what="i-1's three events parked")
    found = await parked.of(namespace, "inventory", "stock")
    assert [(p.aggregate, p.version, p.behind is None) for p in found] == [
        ("InventoryItem/i-1", 1, True),
        ("InventoryItem/i-1", 2, False),
        ("InventoryItem/i-1", 3, False),
    ]
    assert "cannot project i-1" in found[0].error
    assert found[0].attempts == 2
    assert sum(r["parked"] for r in node.status().processors) == 3
    broken.clear()  # the fix is deployed
    await parked.mark(namespace, found, retry=True)
    everything = {**others, "i-1": {"name": "item 1", "count": 3, "version": 3}}
    await eventually(lambda: _items(model, everything), timeout=20, what="the parked events applied")
    assert await parked.of(namespace, "inventory", "stock") == []
    await Client(nc, inventory, namespace=namespace).send(CheckIn(count=4), aggregate_id="i-1")
    after = {**everything, "i-1": {"name": "item 1", "count": 7, "version": 4}}
    await eventually(lambda: _items(model, after), timeout=20, what="i-1 going on")


async def test_status_shows_each_partition_with_its_position_and_lag(nodes: Nodes, nc: NATS, namespace: str) -> None:
    node = await nodes.start("p1", [inventory_with(stock_into("stock"))])
    await check_ins(nc, namespace, items=4, rounds=1)

    def caught_up() -> bool:
        rows = node.status().processors
        return len(rows) == 4 and sum(r["handled"] for r in rows) == 8 and all(r["lag"] == 0 for r in rows)

    await eventually(caught_up, timeout=20, what="every partition caught up")
    rows = node.status().processors
    assert {(r["name"], r["kind"]) for r in rows} == {("stock", "projection")}
    assert max(r["position"] for r in rows) == 8


async def test_a_reader_let_go_ends_on_its_flag_even_if_its_cancellation_is_lost(nc: NATS, namespace: str) -> None:
    """Python 3.11's `asyncio.wait_for` can swallow a cancellation that lands as a fetch completes: a
    reader whose partition is let go also ends because it is marked so, within one fetch."""
    context = inventory_with(note)
    config = ProcessingConfig(partitions=1, interval=0.2)
    feed = Feed(nc, partitions=1, replicas=1, timeout=5)
    await feed.ensure(namespace, context.name)
    reader = PartitionReader(nc, feed=feed, parked=ParkedStore(nc), config=config)
    owned = Partition(Unit(namespace, context, note, 0), epoch=1)
    reading = asyncio.create_task(reader.read(owned, None))

    async def reading_feed() -> bool:
        infos = await nc.jetstream().consumers_info(feed_stream(namespace, context.name))
        return any(info.num_waiting for info in infos)

    await eventually(reading_feed, what="the reader waiting on its partition")
    owned.stopping = True  # and no cancellation reaches it
    done, _ = await asyncio.wait([reading], timeout=5)
    assert reading in done
    assert reading.exception() is None


async def test_a_reader_reads_on_when_its_acknowledgements_and_lag_go_unanswered(
    nodes: Nodes, nc: NATS, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """JetStream slow to answer an acknowledgement or a look at the lag (a loaded server): the reader
    neither fails nor starts over; it reads on, and the view follows."""

    async def unanswered(self: Msg, timeout: float = 1.0) -> Msg:
        raise nats.errors.TimeoutError

    async def no_lag(self: Cursor) -> int:
        raise nats.errors.TimeoutError

    monkeypatch.setattr(Msg, "ack_sync", unanswered)
    monkeypatch.setattr(Cursor, "pending", no_lag)
    node = await nodes.start("p1", [inventory_with(stock_into("stock"))])
    await check_ins(nc, namespace, items=4, rounds=2)
    expected = {f"i-{i}": {"name": f"item {i}", "count": 3, "version": 3} for i in range(4)}
    model = await open_kv(namespace, "inventory", "stock", nc)
    await eventually(lambda: _items(model, expected), timeout=20, what="the view following")
    assert sum(r["handled"] for r in node.status().processors) == 12  # no reader started over


class _Overtaken:
    """A view another writer has moved on: every write is refused as fenced."""

    def __init__(self) -> None:
        self.applies = 0

    def describe(self) -> str:
        return "a view another writer moved on"

    async def checkpoint(self, partition: int) -> int:
        return 0

    async def apply(
        self, partition: int, records: Sequence[Record[Any]], handle: Callable[..., Any], *, parked: str | None = None
    ) -> None:
        self.applies += 1
        raise CheckpointMovedError("moved on")

    async def was_applied(self, parked: str) -> bool:
        return False

    async def reset(self) -> None:
        pass

    async def close(self) -> None:
        pass


async def test_a_reader_whose_checkpoint_moved_ends_without_writing_commit_by_commit(nc: NATS, namespace: str) -> None:
    """A fenced batch is not tried again one commit at a time (each would read the moved checkpoint
    and write after the new owner): the reader ends, and its partition is read on by its owner."""
    created = inventory.codec("InventoryItem").encode_event(ItemCreated(name="w"))
    async with JetStreamEventStore(nc) as store:
        await store.append(
            Address(namespace, "inventory", "InventoryItem", "w"), [created], expected_version=0, command_id="w"
        )
    context = inventory_with(stock_into("stock"))
    feed = Feed(nc, partitions=1, replicas=1, timeout=5)
    await feed.ensure(namespace, context.name)
    reader = PartitionReader(nc, feed=feed, parked=ParkedStore(nc), config=ProcessingConfig(partitions=1))
    view = _Overtaken()
    owned = Partition(Unit(namespace, context, context.projections[0], 0), epoch=1)
    with pytest.raises(CheckpointMovedError):
        await asyncio.wait_for(reader.read(owned, view), 20)
    assert view.applies == 1
    assert owned.parked == 0
