"""Event evolution on a real nats-server: the schema registry, upcasters, and rolling forward and back.

Versions of the inventory example follow one another on one namespace, as deployments do:
`radix.examples.inventory` (1.0), `inventory_v1_1` (ItemsCheckedIn 1.1 adds a note),
`inventory_v2` (ItemCreated 2.0, read from 1.x through the upcaster `titled`), and the broken
versions of `tests.evolved`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import msgspec
import pytest
from nats.aio.client import Client as NATS

from radix import (
    Accepted,
    ActorConfig,
    Address,
    BoundedContext,
    Client,
    CommandConflictError,
    CommandFailedError,
    EmbeddedNats,
    JetStreamEventStore,
    Node,
    NodeConfig,
    SchemaError,
    wire,
)
from radix.domain import EventData
from radix.domain.schemas import schemas_of
from radix.errors import ReadError
from radix.examples import inventory_v1_1, inventory_v2
from radix.examples.inventory import CheckIn, CreateItem, ItemsCheckedIn, ItemState, inventory
from radix.store.kv import KVBucket
from radix.store.schemas import KVSchemaRegistry
from radix.store.snapshots import KVSnapshotStore
from radix.testing import NodeProcess, eventually, lease_owners
from radix.wire.names import MIGRATE, command_subject, node_subject, nodes_bucket
from tests import evolved
from tests.gadgets import Mistype, Poke, Stray, gadgets
from tests.reading import commit_count, log_entries


@asynccontextmanager
async def serving(
    nc: NATS, namespace: str, context: BoundedContext, node_id: str, *, snapshot_every: int = 2
) -> AsyncIterator[Node]:
    """One node on `context`'s code, snapshotting every `snapshot_every` events (0: never)."""
    config = NodeConfig(node_id=node_id, actors=ActorConfig(snapshot_every=snapshot_every))
    async with Node({namespace: [context]}, nats=nc, config=config) as node:
        yield node


def address(namespace: str, aggregate_id: str) -> Address:
    return Address(namespace, "inventory", "InventoryItem", aggregate_id)


async def stored(nc: NATS, namespace: str, aggregate_id: str) -> list[wire.RecordedEvent]:
    async with JetStreamEventStore(nc) as store:
        return [e for c in await store.read(address(namespace, aggregate_id)) for e in c.events]


async def written_by_v1(nc: NATS, namespace: str, aggregate_id: str, name: str, count: int) -> None:
    """On a 1.0 node: the item created and `count` checked in (two events), its snapshot written."""
    v1 = Client(nc, inventory, namespace=namespace)
    async with serving(nc, namespace, inventory, "v1-a") as node:
        await v1.send(CreateItem(name=name), aggregate_id=aggregate_id)
        await v1.send(CheckIn(count=count), aggregate_id=aggregate_id)
        await eventually(lambda: node.stats.snapshots_written >= 1, what="v1's snapshot")


async def test_a_node_registers_its_event_schemas_at_start(nc: NATS, namespace: str) -> None:
    """Each event type version, with the schema msgspec derives, its hash, and who registered it when."""
    async with serving(nc, namespace, inventory, "v1-a"):
        registered = await KVSchemaRegistry(nc).schemas(namespace)
    assert [s.key for s in registered] == [
        "inventory.ItemCreated.1.0",
        "inventory.ItemsCheckedIn.1.0",
        "inventory.ItemsRemoved.1.0",
    ]
    assert [s.hash for s in registered] == [s.hash for s in schemas_of(inventory)]
    assert {s.node for s in registered} == {"v1-a"}
    assert all(s.at.startswith("20") for s in registered)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (
            evolved.with_note,
            r"inventory ItemsCheckedIn 1\.0 is registered with another shape \(by v1-a at .*\): "
            r"field 'note' added, with a default\. .*raise the version to 1\.1",
        ),
        (
            evolved.checked_in_removed_count(),
            r"inventory ItemsCheckedIn 1\.1 is not compatible with inventory ItemsCheckedIn 1\.0 .*"
            r"field 'count' removed.*raise the version to 2\.0",
        ),
        (
            evolved.checked_in_retyped_count(),
            r"inventory ItemsCheckedIn 1\.1 is not compatible .*field 'count' retyped from "
            r'\{"type":"integer"\} to \{"type":"string"\}',
        ),
    ],
    ids=["changed-shape", "removed-field", "retyped-field"],
)
async def test_a_node_whose_events_break_the_rules_does_not_start(
    nc: NATS, namespace: str, code: BoundedContext, expected: str
) -> None:
    """A version registered with another shape, or a minor that removes or retypes a field: the node refuses
    to start, naming the context, type, version, field and rule, and nothing of it is left running."""
    async with serving(nc, namespace, inventory, "v1-a"):
        pass
    node = Node({namespace: [code]}, nats=nc, config=NodeConfig(node_id="broken"))
    with pytest.raises(SchemaError, match=expected):
        await node.start()
    assert (await KVBucket(nc, nodes_bucket(namespace)).get("broken")).value is None  # never joined
    registered = await KVSchemaRegistry(nc).schemas(namespace)
    assert {s.node for s in registered} == {"v1-a"}  # nothing of the broken code was registered


async def test_a_minor_with_a_new_defaulted_field_is_registered_beside_the_old(nc: NATS, namespace: str) -> None:
    async with serving(nc, namespace, inventory, "v1-a"):
        pass
    async with serving(nc, namespace, inventory_v1_1.inventory, "v11-a"):
        registered = {s.key: s.node for s in await KVSchemaRegistry(nc).schemas(namespace)}
    assert registered["inventory.ItemsCheckedIn.1.0"] == "v1-a"
    assert registered["inventory.ItemsCheckedIn.1.1"] == "v11-a"


async def test_a_log_written_by_v1_is_read_by_v2_through_the_upcaster(nc: NATS, namespace: str) -> None:
    """Activation, the conflict check and the client's decoding all read ItemCreated 1.0 as 2.0; nothing
    stored is rewritten."""
    await written_by_v1(nc, namespace, "sku-1", "widget", 3)
    v2 = Client(nc, inventory_v2.inventory, namespace=namespace)
    async with serving(nc, namespace, inventory_v2.inventory, "v2-a"):
        assert (await v2.send(inventory_v2.CheckIn(count=2), aggregate_id="sku-1")).version == 3
        state = await v2.read("InventoryItem", "sku-1")
        assert state.state == inventory_v2.Item(title="widget", unit="each", count=5)
        with pytest.raises(CommandConflictError) as conflict:
            await v2.send(inventory_v2.Remove(count=1), aggregate_id="sku-1", expected_version=0)
    assert conflict.value.conflicts[0] == inventory_v2.ItemCreated(title="widget", unit="each")
    assert conflict.value.records[0].schema == "1.0"
    assert [(e.type, e.schema) for e in await stored(nc, namespace, "sku-1")] == [
        ("ItemCreated", "1.0"),
        ("ItemsCheckedIn", "1.0"),
        ("ItemsCheckedIn", "1.1"),
    ]


async def test_a_snapshot_is_not_used_after_the_state_type_changes(nc: NATS, namespace: str) -> None:
    """v1's snapshot is of ItemState; v2's state is Item: v2 replays the (upcast) history instead, then its
    own snapshot serves its next activation."""
    await written_by_v1(nc, namespace, "sku-1", "widget", 3)
    v2 = Client(nc, inventory_v2.inventory, namespace=namespace)
    async with serving(nc, namespace, inventory_v2.inventory, "v2-a") as node:
        assert (await v2.read("InventoryItem", "sku-1")).state == inventory_v2.Item("widget", "each", 3)
        assert (node.stats.snapshots_loaded, node.stats.replayed_events) == (0, 2)
        await v2.send(inventory_v2.CheckIn(count=1), aggregate_id="sku-1")
        await eventually(lambda: node.stats.snapshots_written >= 1, what="v2's snapshot")
    async with serving(nc, namespace, inventory_v2.inventory, "v2-b") as node:
        assert (await v2.read("InventoryItem", "sku-1")).state == inventory_v2.Item("widget", "each", 4)
        assert node.stats.snapshots_loaded == 1


async def test_an_event_that_does_not_fit_its_shape_is_refused_before_anything_is_written(
    nc: NATS, namespace: str
) -> None:
    """A field holding a value of another type, or an event of another aggregate type: an error reply that
    says why, nothing appended, and the aggregate goes on serving."""
    client = Client(nc, gadgets, namespace=namespace)
    async with Node({namespace: [gadgets]}, nats=nc, config=NodeConfig(node_id="g")):
        assert (await client.send(Poke(), aggregate_id="g-1")).version == 1
        with pytest.raises(CommandFailedError, match=r"nothing was written: Scribbled 1\.0 as decided does not fit"):
            await client.send(Mistype(), aggregate_id="g-1")
        with pytest.raises(CommandFailedError, match="nothing was written: ItemCreated is not an event type of Gadget"):
            await client.send(Stray(), aggregate_id="g-1")
        assert await commit_count(nc, namespace, "gadgets") == 1
        assert (await client.send(Poke(), aggregate_id="g-1")).version == 2


async def test_roll_forward_then_back_never_writes_a_history_no_code_can_read(nc: NATS, namespace: str) -> None:
    """With snapshots on: code that reads only major 2 (no upcaster) refuses an aggregate holding 1.0 events
    even though the 1.0 snapshot fits its state; rolled back, 1.x code refuses the aggregate holding 2.0
    events and serves the rest; code with the upcaster serves both. Each refusal says what to deploy and
    writes nothing."""
    await written_by_v1(nc, namespace, "A", "a", 1)
    forward = Client(nc, evolved.blind, namespace=namespace)
    async with serving(nc, namespace, evolved.blind, "v2-blind"):
        with pytest.raises(CommandFailedError) as refused:
            await forward.send(CheckIn(count=1), aggregate_id="A")
        assert "InventoryItem/A cannot be served by this node" in refused.value.reason
        assert "ItemCreated 1.0 is stored, but this code reads ItemCreated 2.x and has no upcaster" in (
            refused.value.reason
        )
        assert "deploy code that declares an upcaster of ItemCreated from major 1" in refused.value.reason
        assert "retry" not in refused.value.reason
        assert (await forward.send(CreateItem(name="b"), aggregate_id="B")).version == 1
        with pytest.raises(CommandFailedError, match="cannot be served"):  # every time, not only the first
            await forward.send(CheckIn(count=1), aggregate_id="A")
    assert [e.schema for e in await stored(nc, namespace, "A")] == ["1.0", "1.0"]

    v1 = Client(nc, inventory, namespace=namespace)
    async with serving(nc, namespace, inventory, "v1-b"):
        with pytest.raises(CommandFailedError) as refused:
            await v1.send(CheckIn(count=1), aggregate_id="B")
        assert "ItemCreated 2.0 is stored, but this code reads ItemCreated up to 1.x" in refused.value.reason
        assert "deploy code that reads ItemCreated 2.x" in refused.value.reason
        with pytest.raises(ReadError, match=r"deploy code that reads ItemCreated 2\.x"):
            await v1.read("InventoryItem", "B")
        assert (await v1.send(CheckIn(count=2), aggregate_id="A")).version == 3
        assert (await v1.send(CreateItem(name="c"), aggregate_id="C")).version == 1
    assert [e.schema for e in await stored(nc, namespace, "B")] == ["2.0"]

    v2 = Client(nc, inventory_v2.inventory, namespace=namespace)
    async with serving(nc, namespace, inventory_v2.inventory, "v2-a"):
        assert (await v2.send(inventory_v2.CheckIn(count=1), aggregate_id="A")).version == 4
        assert (await v2.send(inventory_v2.CheckIn(count=1), aggregate_id="B")).version == 2
        assert (await v2.read("InventoryItem", "A")).state == inventory_v2.Item("a", "each", 4)
        assert (await v2.read("InventoryItem", "B")).state == inventory_v2.Item("b", "each", 1)


# -- two node processes on adjacent minors -----------------------------------------------------


@pytest.fixture(params=["0", "2"], ids=["no-snapshots", "snapshots"])
def mixed(
    nats_server: EmbeddedNats, namespace: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[dict[str, NodeProcess], bool]]:
    """A node on 1.0 and a node on 1.1 of the inventory context, serving one namespace at once: without
    snapshots (each activation replays what the other wrote) and with them (a move hands its snapshot on)."""
    processes = {
        node_id: NodeProcess(
            nats_url=nats_server.url,
            namespace=namespace,
            context=context,
            node_id=node_id,
            log_dir=tmp_path,
            extra=["--rebalance-interval", "3600", "--snapshot-every", request.param],
        ).start()
        for node_id, context in (
            ("v10", "radix.examples.inventory:inventory"),
            ("v11", "radix.examples.inventory_v1_1:inventory"),
        )
    }
    yield processes, request.param != "0"
    for process in processes.values():
        process.stop()


async def test_nodes_on_adjacent_minors_serve_one_context_and_read_each_others_events(
    mixed: tuple[dict[str, NodeProcess], bool], nc: NATS, namespace: str
) -> None:
    """Each aggregate is written on one node, moved to the other and written there, then moved back: every
    node reads (from the stream and from the other's snapshot) what the other version wrote."""
    processes, snapshots = mixed
    for process in processes.values():
        await process.wait_running(nc)
    aggregates = [f"m-{i}" for i in range(4)]
    writers: dict[str, list[str]] = {a: [] for a in aggregates}

    async def check_in(aggregate_id: str, count: int) -> None:
        # No note: the node a client's command reaches decodes it, and a 1.0 node knows no note.
        body = f'{{"type": "CheckIn", "count": {count}}}'.encode()
        reply = await nc.request(command_subject(address(namespace, aggregate_id)), body, timeout=10)
        assert msgspec.json.decode(reply.data)["status"] == "accepted", reply.data
        assert reply.headers is not None
        writers[aggregate_id].append(reply.headers["Radix-Node"])

    async def move(aggregate_id: str) -> None:
        owner = (await lease_owners(nc, [address(namespace, aggregate_id)]))[aggregate_id]
        other = "v10" if owner == "v11" else "v11"
        request = wire.MigrateRequest("inventory", "InventoryItem", aggregate_id, other)
        subject = node_subject(namespace, owner, MIGRATE)
        answer = await nc.request(subject, wire.control_encoder.encode(request), timeout=20)
        assert msgspec.json.decode(answer.data)["ok"] is True, answer.data

    client = Client(nc, inventory, namespace=namespace)
    for aggregate_id in aggregates:
        await client.send(CreateItem(name=aggregate_id), aggregate_id=aggregate_id)
        for count in (1, 2, 3):
            await check_in(aggregate_id, count)
            if count < 3:
                await move(aggregate_id)
    for nodes in writers.values():
        assert nodes[0] == nodes[2] != nodes[1], nodes  # written on one, the other, and the first again
    older, newer = inventory.codec("InventoryItem"), inventory_v1_1.inventory.codec("InventoryItem")
    for aggregate_id in aggregates:
        assert (await client.read("InventoryItem", aggregate_id)).state == ItemState(name=aggregate_id, count=6)
        checked_in = [e for e in await stored(nc, namespace, aggregate_id) if e.type == "ItemsCheckedIn"]
        assert [e.schema == "1.1" for e in checked_in] == [node == "v11" for node in writers[aggregate_id]]
        assert [b'"note"' in bytes(e.data) for e in checked_in] == [e.schema == "1.1" for e in checked_in]
        assert [older.decode_event(e.type, e.schema, e.data) for e in checked_in] == [
            ItemsCheckedIn(count=c) for c in (1, 2, 3)
        ]
        assert [newer.decode_event(e.type, e.schema, e.data) for e in checked_in] == [
            inventory_v1_1.ItemsCheckedIn(count=c) for c in (1, 2, 3)
        ]
    statuses = [await process.status(nc) for process in processes.values()]
    if snapshots:  # each move hands its snapshot (and what versions it holds) on
        assert sum(s["snapshots_loaded"] for s in statuses) >= 2 * len(aggregates), statuses
    else:  # each activation after a move replays what the other node wrote
        assert all(s["replayed_events"] >= 2 * len(aggregates) for s in statuses), statuses
    registered = {s.key: s.node for s in await KVSchemaRegistry(nc).schemas(namespace)}
    assert registered["inventory.ItemsCheckedIn.1.0"] == "v10"
    assert registered["inventory.ItemsCheckedIn.1.1"] == "v11"


async def test_a_live_aggregate_that_meets_a_newer_event_refuses_and_answers_each_command_once(
    nc: NATS, namespace: str
) -> None:
    """Newer code wrote to the aggregate behind this node's back (as after a takeover): its next append is
    fenced, the reload meets the 2.0 event, and the command is refused with what to deploy; a known command
    sent meanwhile is answered once, as before."""
    v1 = Client(nc, inventory, namespace=namespace)
    async with serving(nc, namespace, inventory, "v1-a", snapshot_every=0):
        await v1.send(CreateItem(name="a"), aggregate_id="A", command_id="create-a")
        async with JetStreamEventStore(nc) as store:
            newer = EventData("ItemsCheckedIn", "2.0", msgspec.Raw(b'{"count": 1, "unit": "box"}'))
            await store.append(address(namespace, "A"), [newer], expected_version=1, command_id="elsewhere")
        again, fresh = await asyncio.gather(
            v1.send(CreateItem(name="a"), aggregate_id="A", command_id="create-a"),
            v1.send(CheckIn(count=1), aggregate_id="A", command_id="check-in"),
            return_exceptions=True,
        )
    assert isinstance(again, Accepted), again
    assert again.version == 1
    assert isinstance(fresh, CommandFailedError), fresh
    assert "ItemsCheckedIn 2.0 is stored, but this code reads ItemsCheckedIn up to 1.x" in fresh.reason
    entries = await log_entries(nc, namespace, 3)
    assert sorted((e.command_id, e.status, e.duplicate) for e in entries) == [
        ("check-in", "error", False),
        ("create-a", "accepted", False),
        ("create-a", "accepted", True),
    ]
    assert [e.schema for e in await stored(nc, namespace, "A")] == ["1.0", "2.0"]


async def test_older_code_writes_no_snapshot_of_a_history_holding_a_newer_minor(nc: NATS, namespace: str) -> None:
    """A 1.0 node reads ItemsCheckedIn 1.1 without the note: newer code must not take the state it builds for
    its own, so it writes no snapshot of that history (the one 1.1 wrote stays the latest)."""
    newer = Client(nc, inventory_v1_1.inventory, namespace=namespace)
    async with serving(nc, namespace, inventory_v1_1.inventory, "v11-a") as node:
        await newer.send(inventory_v1_1.CreateItem(name="a"), aggregate_id="A")
        await newer.send(inventory_v1_1.CheckIn(count=1, note="fragile"), aggregate_id="A")
        await eventually(lambda: node.stats.snapshots_written >= 1, what="1.1's snapshot")
    v1 = Client(nc, inventory, namespace=namespace)
    async with serving(nc, namespace, inventory, "v1-a") as node:
        for _ in range(3):
            await v1.send(CheckIn(count=1), aggregate_id="A")
        assert node.stats.snapshots_loaded == 1  # 1.1's snapshot holds only what 1.0 reads in full
    assert node.stats.snapshots_written == 0
    latest = await KVSnapshotStore(nc).load(address(namespace, "A"))
    assert latest is not None
    assert latest.version == 2
