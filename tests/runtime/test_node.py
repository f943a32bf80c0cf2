"""The runtime on one node, through the wire, against a real nats-server."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from nats.aio.client import Client as NATS

from radix import (
    ActorConfig,
    Address,
    Aggregate,
    BoundedContext,
    Client,
    Command,
    CommandConflictError,
    CommandFailedError,
    CommandRejectedError,
    CommandTimeoutError,
    ConnectOptions,
    EmbeddedNats,
    Event,
    IntakeConfig,
    InvalidNameError,
    JetStreamEventStore,
    Node,
    NodeConfig,
    StoreConfig,
    wire,
)
from radix.errors import ReadError, StoreError
from radix.examples.inventory import (
    CheckIn,
    CreateItem,
    ItemsCheckedIn,
    ItemsRemoved,
    ItemState,
    Remove,
    inventory,
)
from radix.runtime import intake
from radix.runtime.dedup import command_digest
from radix.runtime.leases import NodeLeases
from radix.runtime.node import NodeState
from radix.runtime.ports import LeaseHolder
from radix.store import Cause, Commit
from radix.testing import eventually, open_inboxes
from radix.transport import guard
from radix.wire.names import command_subject, commands_stream, event_subject, events_stream, query_subject
from tests.gadgets import Corrupt, Explode, Poke, Refuse, Scribble, gadgets
from tests.rawwire import send_raw_frames
from tests.reading import commit_count, log_entries


@pytest.fixture
async def node(nc: NATS, namespace: str) -> AsyncIterator[Node]:
    config = NodeConfig(
        node_id="node-a", intake=IntakeConfig(max_command_bytes=4096), actors=ActorConfig(snapshot_every=10)
    )
    async with Node({namespace: [inventory, gadgets]}, nats=nc, config=config) as n:
        yield n


@pytest.fixture
def client(nc: NATS, namespace: str) -> Client:
    return Client(nc, inventory, namespace=namespace)


async def test_commands_accepted_with_contiguous_versions(node: Node, client: Client) -> None:
    """Accepted commands answer with the new version and their events, versions 1, 2, 3..."""
    created = await client.send(CreateItem(name="widget"), aggregate_id="sku-1")
    assert (created.version, [e.version for e in created.records]) == (1, [1])
    versions = [(await client.send(CheckIn(count=i), aggregate_id="sku-1")).version for i in (1, 2, 3)]
    assert versions == [2, 3, 4]
    removed = await client.send(Remove(count=6), aggregate_id="sku-1")
    assert removed.events == (ItemsRemoved(count=6),)
    assert removed.version == 5


async def test_each_command_sent_gets_an_id_of_its_own(node: Node, client: Client, nc: NATS, namespace: str) -> None:
    """Ids the client makes are unique per command and per client (a prefix of its own, then a count)."""
    other = Client(nc, inventory, namespace=namespace)
    sent = [
        await c.send(CreateItem(name="x"), aggregate_id=f"sku-id-{n}") for n, c in enumerate([client, client, other])
    ]
    ids = [a.command_id for a in sent]
    assert len(set(ids)) == 3
    assert ids[0].split("-")[0] == ids[1].split("-")[0] != ids[2].split("-")[0]


async def test_domain_rejection(node: Node, client: Client, nc: NATS, namespace: str) -> None:
    """A command the domain refuses is rejected with its reason, and nothing is appended."""
    with pytest.raises(CommandRejectedError) as info:
        await client.send(Remove(count=1), aggregate_id="ghost")
    assert info.value.reason == "item does not exist: create it first"
    await client.send(CreateItem(name="w"), aggregate_id="sku-2")
    with pytest.raises(CommandRejectedError, match="only 0 in stock"):
        await client.send(Remove(count=1), aggregate_id="sku-2")
    assert await commit_count(nc, namespace) == 1


async def test_true_conflict_and_stale_but_compatible(node: Node, client: Client) -> None:
    """A stale Remove that a concurrent removal invalidates conflicts; a stale CheckIn proceeds."""
    await client.send(CreateItem(name="w"), aggregate_id="sku-3")
    seen = (await client.send(CheckIn(count=10), aggregate_id="sku-3")).version
    await client.send(Remove(count=3), aggregate_id="sku-3")  # someone else, after `seen`
    with pytest.raises(CommandConflictError) as info:
        await client.send(Remove(count=2), aggregate_id="sku-3", expected_version=seen)
    assert info.value.reason == "3 item(s) were removed concurrently; check the stock and try again"
    assert [(e.type, e.version) for e in info.value.records] == [("ItemsRemoved", 3)]
    assert info.value.conflicts == (ItemsRemoved(count=3),)  # decoded, as an accepted command's events are
    accepted = await client.send(CheckIn(count=1), aggregate_id="sku-3", expected_version=seen)
    assert accepted.version == 4
    current = await client.send(Remove(count=2), aggregate_id="sku-3", expected_version=4)
    assert current.version == 5


async def test_a_conflict_check_after_parking_reads_only_the_recent_commits(
    node: Node, client: Client, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A parked actor keeps no events; a stale command's conflict check reads them back from a commit it
    remembers, not from the start of the aggregate's history."""
    await client.send(CreateItem(name="w"), aggregate_id="sku-r")
    for _ in range(20):
        seen = (await client.send(CheckIn(count=5), aggregate_id="sku-r")).version
    await client.send(Remove(count=3), aggregate_id="sku-r")
    reads: list[int] = []
    original = node.store.read

    async def spy(address: Address, *, after: int = 0, start: int = 0, leader: bool = False) -> list[Commit]:
        reads.append(start)
        return await original(address, after=after, start=start, leader=leader)

    monkeypatch.setattr(node.store, "read", spy)
    with pytest.raises(CommandConflictError) as info:
        await client.send(Remove(count=2), aggregate_id="sku-r", expected_version=seen)
    assert [(e.type, e.version) for e in info.value.records] == [("ItemsRemoved", 22)]
    first = (await original(Address(namespace, "inventory", "InventoryItem", "sku-r")))[0].position
    assert reads
    assert all(start > first for start in reads)


async def test_a_conflict_check_never_misses_events_a_lagging_replica_lacks(
    node: Node, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reads may be answered by a replica that lags. A conflict check whose read lacks events the actor has
    applied reads the rest from the stream's leader: a stale withdrawal still meets the removal it raced."""
    await client.send(CreateItem(name="w"), aggregate_id="sku-lag")
    seen = (await client.send(CheckIn(count=10), aggregate_id="sku-lag")).version
    await client.send(Remove(count=3), aggregate_id="sku-lag")
    original = node.store.read
    from_leader: list[bool] = []

    async def lagging(address: Address, *, after: int = 0, start: int = 0, leader: bool = False) -> list[Commit]:
        commits = await original(address, after=after, start=start, leader=leader)
        from_leader.append(leader)
        return commits if leader else commits[:-1]  # the latest commit has not reached this replica

    monkeypatch.setattr(node.store, "read", lagging)
    with pytest.raises(CommandConflictError) as info:
        await client.send(Remove(count=2), aggregate_id="sku-lag", expected_version=seen)
    assert [(e.type, e.version) for e in info.value.records] == [("ItemsRemoved", 3)]
    assert from_leader == [False, True]


async def test_expected_version_ahead_is_an_error(node: Node, client: Client) -> None:
    """An expected version the aggregate has not reached is bad input."""
    await client.send(CreateItem(name="w"), aggregate_id="sku-4")
    with pytest.raises(CommandFailedError, match="expected_version 7 is ahead of the aggregate's version 1"):
        await client.send(CheckIn(count=1), aggregate_id="sku-4", expected_version=7)


async def test_idempotent_retries(node: Node, client: Client, nc: NATS, namespace: str) -> None:
    """A retried command id answers the original result and appends nothing, whatever the outcome was."""
    await client.send(CreateItem(name="w"), aggregate_id="sku-5", command_id="create-5")
    first = await client.send(CheckIn(count=2), aggregate_id="sku-5", command_id="in-5")
    again = await client.send(CheckIn(count=2), aggregate_id="sku-5", command_id="in-5")
    assert again == first
    with pytest.raises(CommandRejectedError):
        await client.send(Remove(count=5), aggregate_id="sku-5", command_id="out-5")
    await client.send(CheckIn(count=10), aggregate_id="sku-5")
    with pytest.raises(CommandRejectedError, match="only 2 in stock"):  # the original answer, not a new decision
        await client.send(Remove(count=5), aggregate_id="sku-5", command_id="out-5")
    assert await commit_count(nc, namespace) == 3


async def test_a_command_id_reused_for_another_command_is_an_error_not_a_retry(
    nc: NATS, namespace: str, client: Client
) -> None:
    """An id sent again with another body is not a retry: it is answered with an error naming the first
    outcome, and nothing is decided or appended; the first body sent again is still its retry. That holds
    for an applied command after the actor was passivated (its digest is stored with its events), and for
    a refused one."""
    config = NodeConfig(actors=ActorConfig(idle_timeout=0.2, snapshot_every=0))
    async with Node({namespace: [inventory]}, nats=nc, config=config) as node:
        await client.send(CreateItem(name="w"), aggregate_id="sku-u")
        first = await client.send(CheckIn(count=2), aggregate_id="sku-u", command_id="in-u")
        reused = "command id 'in-u' was used before for another command (first outcome: accepted at version 2)"
        with pytest.raises(CommandFailedError, match=re.escape(reused)):
            await client.send(CheckIn(count=3), aggregate_id="sku-u", command_id="in-u")
        await eventually(lambda: node.live_actors == 0, what="passivation")
        with pytest.raises(CommandFailedError, match=re.escape(reused)):
            await client.send(Remove(count=1), aggregate_id="sku-u", command_id="in-u")
        assert await client.send(CheckIn(count=2), aggregate_id="sku-u", command_id="in-u") == first
        with pytest.raises(CommandRejectedError):
            await client.send(Remove(count=5), aggregate_id="sku-u", command_id="out-u")
        refused_then = "'out-u' was used before for another command (first outcome: rejected at version 2)"
        with pytest.raises(CommandFailedError, match=re.escape(refused_then)):
            await client.send(Remove(count=1), aggregate_id="sku-u", command_id="out-u")
        with pytest.raises(CommandRejectedError, match="only 2 in stock"):
            await client.send(Remove(count=5), aggregate_id="sku-u", command_id="out-u")
        assert (await client.read("InventoryItem", "sku-u")).state == ItemState(name="w", count=2)
        assert await commit_count(nc, namespace) == 2


async def test_thousand_aggregates_twenty_commands_each(node: Node, client: Client, nc: NATS, namespace: str) -> None:
    """1,000 aggregates x 20 commands, all in flight at once: each lands exactly once, in order per aggregate."""

    async def drive(i: int) -> None:
        await client.send(CreateItem(name=f"item {i}"), aggregate_id=f"bulk-{i}", timeout=60)
        for n in range(1, 21):
            result = await client.send(CheckIn(count=n), aggregate_id=f"bulk-{i}", timeout=60)
            assert result.version == n + 1

    await asyncio.wait_for(asyncio.gather(*(drive(i) for i in range(1000))), timeout=240)
    assert await commit_count(nc, namespace) == 21_000
    async with JetStreamEventStore(nc) as store:
        for i in (0, 499, 999):
            commits = await store.read(Address(namespace, "inventory", "InventoryItem", f"bulk-{i}"))
            assert [c.version for c in commits] == list(range(1, 22))
            assert [msgspec.json.decode(c.events[0].data) for c in commits[1:]] == [{"count": n} for n in range(1, 21)]


async def test_passivation_keeps_state_and_idempotence(nc: NATS, namespace: str, client: Client) -> None:
    """An idle actor is passivated; the next command re-activates it with its state and known command ids."""
    config = NodeConfig(actors=ActorConfig(idle_timeout=0.2, snapshot_every=0))
    async with Node({namespace: [inventory]}, nats=nc, config=config) as node:
        await client.send(CreateItem(name="w"), aggregate_id="sku-6")
        first = await client.send(CheckIn(count=4), aggregate_id="sku-6", command_id="in-6")
        await eventually(lambda: node.live_actors == 0, what="passivation")
        assert node.stats.passivations == 1
        again = await client.send(CheckIn(count=4), aggregate_id="sku-6", command_id="in-6")
        assert again == first
        assert node.stats.activations == 2
        assert (await client.send(Remove(count=4), aggregate_id="sku-6")).version == 3


@pytest.mark.parametrize(("commands", "snapshot_every"), [(100, 0), (40, 10), (300, 10)])
async def test_a_retry_long_after_is_recognised(
    nc: NATS, namespace: str, client: Client, commands: int, snapshot_every: int
) -> None:
    """A command sent again after many others answers its original result and appends nothing,
    on the same actor and after passivation: with no snapshot (a replay remembers the ids of its
    latest 128 commits), with one that carries the command ids, and with one that carries only the
    latest 256 and points at the rest.

    The stream's duplicate window is made too short to help, as it is for every command but
    the first of a group commit: the runtime's own memory of command ids must recognise it."""
    config = NodeConfig(
        actors=ActorConfig(recent_commands=4, idle_timeout=0.3, snapshot_every=snapshot_every),
        store=StoreConfig(duplicate_window=0.1),  # its least: passivation alone takes longer
    )
    async with Node({namespace: [inventory]}, nats=nc, config=config) as node:
        await client.send(CreateItem(name="w"), aggregate_id="sku-r")
        first = await client.send(CheckIn(count=3), aggregate_id="sku-r", command_id="old")
        for _ in range(commands):
            await client.send(CheckIn(count=1), aggregate_id="sku-r")
        assert await client.send(CheckIn(count=3), aggregate_id="sku-r", command_id="old") == first
        await eventually(lambda: node.live_actors == 0, what="passivation")
        assert await client.send(CheckIn(count=3), aggregate_id="sku-r", command_id="old") == first
        assert node.stats.activations == 2
        assert await commit_count(nc, namespace) == commands + 2


async def test_a_refusal_older_than_the_latest_kept_is_refused_again_when_sent_late(
    nc: NATS, namespace: str, client: Client
) -> None:
    """A refused command delivered again after more refusals than the record keeps whole (a copy held in
    a partitioned server, delivered after the heal): the actor still knows it was refused, and does not
    decide it anew on a state where it would now be accepted."""
    config = NodeConfig(actors=ActorConfig(recent_commands=4))
    async with Node({namespace: [inventory]}, nats=nc, config=config):
        await client.send(CreateItem(name="w"), aggregate_id="sku-l")
        with pytest.raises(CommandRejectedError, match="only 0 in stock"):
            await client.send(Remove(count=5), aggregate_id="sku-l", command_id="early")
        for n in range(6):
            with pytest.raises(CommandRejectedError):
                await client.send(Remove(count=50 + n), aggregate_id="sku-l")
        await client.send(CheckIn(count=10), aggregate_id="sku-l")  # "early" would be accepted now
        with pytest.raises(CommandRejectedError, match="refused before") as again:
            await client.send(Remove(count=5), aggregate_id="sku-l", command_id="early")
        assert again.value.version == 1
        assert (await client.read("InventoryItem", "sku-l")).state == ItemState(name="w", count=10)


async def test_a_command_a_former_owner_wrote_is_not_applied_again(
    node: Node, client: Client, nc: NATS, namespace: str
) -> None:
    """A retried command that another writer stored behind the actor's back (a former owner's late
    write) is found when the refused append makes the actor reload, and answered as a duplicate."""
    await client.send(CreateItem(name="w"), aggregate_id="sku-f")
    address = Address(namespace, "inventory", "InventoryItem", "sku-f")
    checked_in = inventory.codec("InventoryItem").encode_event(ItemsCheckedIn(count=5))
    async with JetStreamEventStore(nc) as former_owner:
        # A group commit led by another command: the stream's Nats-Msg-Id cannot recognise "late".
        await former_owner.append(
            address, [checked_in] * 2, expected_version=1, command_id="x", causes=[Cause("x"), Cause("late")]
        )
    again = await client.send(CheckIn(count=5), aggregate_id="sku-f", command_id="late")
    assert again.version == 3
    assert [e.version for e in again.records] == [3]
    assert await commit_count(nc, namespace) == 2
    assert node.stats.fenced == 1


async def test_a_retry_answered_by_another_writers_commit_takes_that_commit_as_it_is(
    node: Node, client: Client, nc: NATS, namespace: str
) -> None:
    """A refused append whose command leads the commit another writer made meanwhile is answered from
    that commit, and the actor continues from the stored state, not from its own decision."""
    await client.send(CreateItem(name="w"), aggregate_id="sku-g")
    address = Address(namespace, "inventory", "InventoryItem", "sku-g")
    codec = inventory.codec("InventoryItem")
    async with JetStreamEventStore(nc) as former_owner:
        await former_owner.append(
            address,
            [codec.encode_event(ItemsCheckedIn(count=5)), codec.encode_event(ItemsCheckedIn(count=7))],
            expected_version=1,
            command_id="late",
            causes=[Cause("late"), Cause("other")],
        )
    again = await client.send(CheckIn(count=5), aggregate_id="sku-g", command_id="late")
    assert again.version == 2
    # 12 are in stock (5 + 7): an actor that took its own decision (5) for the stored state would refuse.
    assert (await client.send(Remove(count=10), aggregate_id="sku-g")).version == 4
    assert await commit_count(nc, namespace) == 3


async def test_a_refusal_is_never_decided_on_stale_state(node: Node, client: Client, nc: NATS, namespace: str) -> None:
    """A command refused on the actor's state is checked against the stream's head first: if others wrote
    meanwhile (or the state was read from a lagging replica), the actor reloads and decides again."""
    await client.send(CreateItem(name="w"), aggregate_id="sku-h")
    address = Address(namespace, "inventory", "InventoryItem", "sku-h")
    async with JetStreamEventStore(nc) as other_writer:
        checked_in = inventory.codec("InventoryItem").encode_event(ItemsCheckedIn(count=5))
        await other_writer.append(address, [checked_in], expected_version=1, command_id="elsewhere")
    # On the actor's state (nothing in stock) this would be refused; on the stored state it is not.
    assert (await client.send(Remove(count=3), aggregate_id="sku-h")).version == 3


async def test_an_actor_failing_unexpectedly_does_not_stop_the_node(
    nc: NATS, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error escaping an actor (here its liveness check) ends that actor; the node goes on serving."""
    async with Node({namespace: [inventory]}, nats=nc) as node:
        client = Client(nc, inventory, namespace=namespace, attempt_timeout=0.5)
        await client.send(CreateItem(name="w"), aggregate_id="sku-e")
        original = NodeLeases.confirm_live
        failures = [StoreError("the store broke")]

        async def failing_once(self: NodeLeases, holder: LeaseHolder) -> bool:
            if failures:
                raise failures.pop()
            return await original(self, holder)

        monkeypatch.setattr(NodeLeases, "confirm_live", failing_once)
        # The first actor to check its liveness fails; the client's retry meets a fresh one.
        assert (await client.send(CreateItem(name="v"), aggregate_id="sku-f", timeout=10)).version == 1
        assert failures == []
        assert node.state is NodeState.RUNNING
        assert (await client.send(CheckIn(count=1), aggregate_id="sku-e", timeout=10)).version == 2


async def test_a_write_whose_answer_was_lost_is_not_applied_again(
    nc: NATS, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A group commit that landed although the store reported an error leaves the actor unsure. A retry
    of its second command (which JetStream's message-id deduplication, naming the first, does not
    catch) is answered from the stored commit once the actor has reloaded, never applied twice."""
    address = Address(namespace, "inventory", "InventoryItem", "sku-l")
    async with Node({namespace: [inventory]}, nats=nc) as node:
        client = Client(nc, inventory, namespace=namespace)
        await client.send(CreateItem(name="w"), aggregate_id="sku-l")
        original = node.store.append
        gate, held = asyncio.Event(), asyncio.Event()
        lost: list[StoreError] = [StoreError("no answer from the stream (the write may have landed)")]

        async def answer_lost(*args: Any, **kwargs: Any) -> Any:
            if kwargs["command_id"] == "hold":  # keep the actor busy until two commands queue behind
                held.set()
                await gate.wait()
            commit = await original(*args, **kwargs)
            if kwargs["command_id"] == "in-a" and lost:
                raise lost.pop()
            return commit

        monkeypatch.setattr(node.store, "append", answer_lost)
        hold = asyncio.create_task(client.send(CheckIn(count=1), aggregate_id="sku-l", command_id="hold"))
        await asyncio.wait_for(held.wait(), 5)
        first = asyncio.create_task(client.send(CheckIn(count=2), aggregate_id="sku-l", command_id="in-a"))
        second = asyncio.create_task(client.send(CheckIn(count=4), aggregate_id="sku-l", command_id="in-l"))
        await eventually(lambda: node.queued(address) == 2, what="two commands queued behind the held one")
        gate.set()
        assert (await hold).version == 2
        for landed in (first, second):
            with pytest.raises(CommandFailedError, match="may have landed"):
                await landed
        again = await client.send(CheckIn(count=4), aggregate_id="sku-l", command_id="in-l")
        assert again.version == 4
        assert [e.count for e in again.events if isinstance(e, ItemsCheckedIn)] == [4]
        commits = await node.store.read(address)
        assert [e.command_id for c in commits for e in c.events][1:] == ["hold", "in-a", "in-l"]


async def test_rejections_are_remembered_across_passivation(nc: NATS, namespace: str, client: Client) -> None:
    """A retried command id that was rejected gets the same rejection after the actor was passivated."""
    async with Node({namespace: [inventory]}, nats=nc, config=NodeConfig(actors=ActorConfig(idle_timeout=0.2))) as node:
        await client.send(CreateItem(name="w"), aggregate_id="sku-p")
        with pytest.raises(CommandRejectedError):
            await client.send(Remove(count=3), aggregate_id="sku-p", command_id="out-p")
        await eventually(lambda: node.live_actors == 0, what="passivation")
        await client.send(CheckIn(count=5), aggregate_id="sku-p")
        with pytest.raises(CommandRejectedError, match="only 0 in stock"):
            await client.send(Remove(count=3), aggregate_id="sku-p", command_id="out-p")


async def test_memory_is_bounded_by_max_actors(nc: NATS, namespace: str, client: Client) -> None:
    """Past max_actors, the least recently used idle actors are passivated."""
    async with Node({namespace: [inventory]}, nats=nc, config=NodeConfig(actors=ActorConfig(max_actors=10))) as node:
        for i in range(30):
            await client.send(CreateItem(name="w"), aggregate_id=f"lru-{i}")
        await eventually(lambda: node.live_actors <= 10, what="at most 10 live actors")
        assert node.is_live(Address(namespace, "inventory", "InventoryItem", "lru-29"))
        assert (await client.send(CheckIn(count=1), aggregate_id="lru-0")).version == 2


async def test_snapshots_shorten_activation(nc: NATS, namespace: str, client: Client) -> None:
    """With snapshots every 10 events, re-activation replays only the events after the snapshot; a new
    aggregate, and one whose snapshot reaches the stream's head, activate without reading any events."""
    config = NodeConfig(actors=ActorConfig(idle_timeout=0.2, snapshot_every=10))
    async with Node({namespace: [inventory]}, nats=nc, config=config) as node:
        await client.send(CreateItem(name="w"), aggregate_id="sku-7")
        assert (node.stats.activations, node.stats.history_reads) == (1, 0)
        for _ in range(24):
            await client.send(CheckIn(count=1), aggregate_id="sku-7")
        await eventually(lambda: node.live_actors == 0, what="passivation")
        written = node.stats.snapshots_written
        assert written >= 2
        replayed = node.stats.replayed_events
        result = await client.send(Remove(count=24), aggregate_id="sku-7")  # needs the full state
        assert result.version == 26
        assert node.stats.snapshots_loaded == 1
        assert node.stats.replayed_events == replayed  # passivation snapshotted version 25: nothing to replay
        assert node.stats.history_reads == 0


async def test_a_snapshot_of_a_history_that_is_gone_is_ignored(nc: NATS, namespace: str, client: Client) -> None:
    """A snapshot of an aggregate whose stream holds nothing (its history was purged) is not adopted: the
    aggregate starts afresh."""
    config = NodeConfig(actors=ActorConfig(idle_timeout=0.2, snapshot_every=5))
    async with Node({namespace: [inventory]}, nats=nc, config=config) as node:
        await client.send(CreateItem(name="w"), aggregate_id="sku-real")
        for _ in range(9):
            await client.send(CheckIn(count=1), aggregate_id="sku-real")
        await eventually(lambda: node.live_actors == 0, what="passivation")
        snapshot = await node.snapshots.load(Address(namespace, "inventory", "InventoryItem", "sku-real"))
        assert snapshot is not None
        assert snapshot.version == 10
        await node.snapshots.save(Address(namespace, "inventory", "InventoryItem", "sku-ghost"), snapshot)
        assert (await client.send(CreateItem(name="g"), aggregate_id="sku-ghost")).version == 1
        assert (await client.read("InventoryItem", "sku-ghost")).state.count == 0


async def test_a_snapshot_of_another_state_shape_is_ignored(nc: NATS, namespace: str, client: Client) -> None:
    """A snapshot whose fingerprint does not match the code is ignored and history replayed."""
    config = NodeConfig(actors=ActorConfig(idle_timeout=0.2, snapshot_every=5))
    async with Node({namespace: [inventory]}, nats=nc, config=config) as node:
        for _ in range(1):
            await client.send(CreateItem(name="w"), aggregate_id="sku-8")
        for _ in range(9):
            await client.send(CheckIn(count=1), aggregate_id="sku-8")
        await eventually(lambda: node.live_actors == 0, what="passivation")
        address = Address(namespace, "inventory", "InventoryItem", "sku-8")
        snapshot = await node.snapshots.load(address)
        assert snapshot is not None
        assert snapshot.version == 10
        await node.snapshots.save(address, msgspec.structs.replace(snapshot, fingerprint="old-code"))
        before = node.stats.replayed_events
        assert (await client.send(Remove(count=9), aggregate_id="sku-8")).version == 11
        assert node.stats.replayed_events - before == 10
        assert node.stats.snapshots_loaded == 0


async def test_every_command_is_logged(node: Node, client: Client, nc: NATS, namespace: str) -> None:
    """Accepted, rejected, conflict and error outcomes all reach the command log with who and why, each
    once: an accepted command's entry is its commit's alone, the others are messages of the log stream."""
    await client.send(CreateItem(name="w"), aggregate_id="sku-9", command_id="c-ok", issuer="ann", correlation_id="k1")
    with pytest.raises(CommandRejectedError):
        await client.send(Remove(count=1), aggregate_id="sku-9", command_id="c-rej", issuer="bob")
    await client.send(CheckIn(count=5), aggregate_id="sku-9", command_id="c-in")
    await client.send(Remove(count=1), aggregate_id="sku-9", command_id="c-out")
    with pytest.raises(CommandConflictError):
        await client.send(Remove(count=1), aggregate_id="sku-9", command_id="c-conf", expected_version=2)
    reply = await nc.request(
        command_subject(Address(namespace, "inventory", "InventoryItem", "sku-9")),
        b"{oops",
        headers={"Radix-Command-Id": "c-err"},
    )
    assert msgspec.json.decode(reply.data)["status"] == "error"
    entries = {e.command_id: e for e in await log_entries(nc, namespace, 6)}
    assert {k: e.status for k, e in entries.items()} == {
        "c-ok": "accepted",
        "c-rej": "rejected",
        "c-in": "accepted",
        "c-out": "accepted",
        "c-conf": "conflict",
        "c-err": "error",
    }
    ok = entries["c-ok"]
    assert (ok.type, ok.issuer, ok.correlation_id, ok.version, ok.node) == ("CreateItem", "ann", "k1", 1, "node-a")
    assert entries["c-rej"].reason == "cannot remove 1: only 0 in stock"
    assert entries["c-rej"].issuer == "bob"
    assert (entries["c-conf"].expected_version, entries["c-conf"].version) == (2, 3)
    assert entries["c-err"].reason is not None
    assert "malformed command payload" in entries["c-err"].reason
    stored = await nc.jetstream().get_last_msg(
        events_stream(namespace, "inventory"), event_subject(Address(namespace, "inventory", "InventoryItem", "sku-9"))
    )
    assert stored.headers is not None
    assert stored.headers["Radix-Command-Id"] == "c-out"
    assert [e.command_id for e in wire.entries_in(wire.commit_decoder.decode(stored.data or b""))] == ["c-out"]
    assert (entries["c-out"].expected_version, entries["c-out"].version) == (None, 3)
    assert entries["c-out"].aggregate == command_subject(Address(namespace, "inventory", "InventoryItem", "sku-9"))
    log = await nc.jetstream().stream_info(commands_stream(namespace, "inventory"))
    assert log.state.messages == 3  # c-rej, c-conf, c-err


BAD_INPUTS = [
    ("cmd.InventoryItem.sku-x", b"{not json", {}, "malformed command payload"),
    ("cmd.InventoryItem.sku-x", b'{"type": "Teleport"}', {}, "unknown command type 'Teleport' for InventoryItem"),
    ("cmd.InventoryItem.sku-x", b'{"type": "Poke"}', {}, "unknown command type 'Poke'"),
    ("cmd.InventoryItem.sku-x", b'{"type": "CheckIn", "count": "3"}', {}, "Expected `int`, got `str`"),
    ("cmd.InventoryItem.a.b", b'{"type": "CheckIn", "count": 3}', {}, "invalid aggregate id 'a.b'"),
    ("cmd.Warehouse.w-1", b'{"type": "CheckIn", "count": 3}', {}, "context 'inventory' has InventoryItem"),
    (
        "cmd.InventoryItem.sku-x",
        b'{"type": "CheckIn", "count": 3}',
        {"Radix-Expected-Version": "three"},
        "Radix-Expected-Version must be a whole number",
    ),
    (
        "cmd.InventoryItem.sku-x",
        b'{"type": "CreateItem", "name": "' + b"x" * 5000 + b'"}',
        {},
        "this node accepts at most 4096",
    ),
    # Digits `str.isdigit` takes that are no ASCII whole number, and one past any version.
    *(
        ("cmd.InventoryItem.sku-x", b'{"type": "CheckIn", "count": 3}', {"Radix-Expected-Version": raw}, "in ASCII")
        for raw in ("\u00b2", "\u0661\u0662", "\uff11", "9" * 4301)
    ),
    # Written with every event: bounded in bytes, not characters (150,000 emoji are 600 KB).
    (
        "cmd.InventoryItem.sku-x",
        b'{"type": "CheckIn", "count": 3}',
        {"Radix-Correlation-Id": "\U0001f600" * 150_000},
        "Radix-Correlation-Id must be printable and at most 1024 bytes",
    ),
    (
        "cmd.InventoryItem.sku-x",
        b'{"type": "CheckIn", "count": 3}',
        {"Radix-Issuer": "\u00e9" * 600},
        "Radix-Issuer must be printable and at most 1024 bytes",
    ),
    ("cmd.InventoryItem", b'{"type": "CheckIn", "count": 3}', {}, "send commands to radix."),
]


@pytest.mark.parametrize(("suffix", "payload", "headers", "reason"), BAD_INPUTS)
async def test_bad_input_gets_an_error_reply(
    node: Node,
    client: Client,
    nc: NATS,
    namespace: str,
    suffix: str,
    payload: bytes,
    headers: dict[str, str],
    reason: str,
) -> None:
    """Each kind of bad input is answered with a clear error, logged, appends nothing; the node goes on."""
    await client.send(CreateItem(name="w"), aggregate_id="sku-x")
    reply = await nc.request(f"radix.{namespace}.inventory.{suffix}", payload, headers=headers or None, timeout=5)
    body = msgspec.json.decode(reply.data)
    assert body["status"] == "error"
    assert reason in body["reason"]
    assert reply.headers is not None
    assert reply.headers["Radix-Status"] == "error"
    assert await commit_count(nc, namespace) == 1
    entries = await log_entries(nc, namespace, 2)
    assert entries[1].status == "error"
    assert (await client.send(CheckIn(count=1), aggregate_id="sku-x")).version == 2


async def test_user_code_exceptions_are_error_replies(node: Node, nc: NATS, namespace: str) -> None:
    """decide or evolve raising is an error reply; the actor lives on and nothing is appended."""
    client = Client(nc, gadgets, namespace=namespace)
    assert (await client.send(Poke(), aggregate_id="g-1")).version == 1
    with pytest.raises(CommandFailedError, match=r"decide raised ZeroDivisionError\('boom'\)"):
        await client.send(Explode(), aggregate_id="g-1")
    with pytest.raises(CommandFailedError, match="could not be applied, and nothing was written: RuntimeError"):
        await client.send(Corrupt(), aggregate_id="g-1")
    assert (await client.send(Poke(), aggregate_id="g-1")).version == 2
    assert await commit_count(nc, namespace, "gadgets") == 2


async def test_refusals_too_large_for_a_message_are_cut_to_fit(node: Node, nc: NATS, namespace: str) -> None:
    """A conflict whose concurrent events would not fit in one message is answered with the first of them
    that fit and the count of those left out; a reason too long is cut. Sent again, each gets the same
    answer (from the refusal record, which holds the cut reply), and the aggregate goes on."""
    client = Client(nc, gadgets, namespace=namespace)
    seen = (await client.send(Poke(), aggregate_id="g-big")).version
    for _ in range(3):
        await client.send(Scribble(size=5_000), aggregate_id="g-big")
    for _ in range(12):  # 1.2 MB of events: over the server's max_payload of 1 MiB
        await client.send(Scribble(size=100_000), aggregate_id="g-big")
    answers: list[wire.Reply] = []
    for _ in range(2):
        with pytest.raises(CommandConflictError) as conflict:
            await client.send(Poke(), aggregate_id="g-big", expected_version=seen, command_id="late", timeout=5)
        answers.append(conflict.value.reply)
    first, again = answers
    assert first == again
    assert [e.version for e in first.conflicts] == [2, 3, 4]  # the first ones, as many as fit
    assert first.conflicts_omitted == 12
    assert (first.reason or "").startswith("15 event(s) were committed")
    for _ in range(2):
        with pytest.raises(CommandRejectedError) as rejected:
            await client.send(Refuse(size=2_000_000), aggregate_id="g-big", command_id="wordy", timeout=5)
        assert rejected.value.reason.startswith("nono")
        assert rejected.value.reason.endswith("(1998000 more characters)")
    assert (await client.send(Poke(), aggregate_id="g-big")).version == 17


async def test_command_of_another_aggregate_type(node: Node, nc: NATS, namespace: str) -> None:
    """A command sent to an aggregate type it does not belong to says which type it belongs to."""
    subject = command_subject(Address(namespace, "gadgets", "InventoryItem", "x"))
    reply = await nc.request(subject, b'{"type": "Poke"}', timeout=5)
    body = msgspec.json.decode(reply.data)
    assert body["status"] == "error"
    assert "unknown command type 'Poke' for InventoryItem: it belongs to Gadget" in body["reason"]


async def test_raw_nats_client_per_protocol(node: Node, nc: NATS, namespace: str) -> None:
    """Any NATS client can send a command as docs/protocol.md describes, and read the JSON reply."""
    subject = f"radix.{namespace}.inventory.cmd.InventoryItem.raw-1"
    create = b'{"type": "CreateItem", "name": "raw"}'
    reply = await nc.request(subject, create, headers={"Radix-Command-Id": "r1"})
    assert reply.headers is not None
    assert reply.headers["Radix-Status"] == "accepted"
    created = {"type": "ItemCreated", "schema": "1.0", "version": 1, "data": {"name": "raw"}, "command_id": "r1"}
    assert msgspec.json.decode(reply.data) == {
        "status": "accepted",
        "command_id": "r1",
        "version": 1,
        "events": [{**created, "command_digest": command_digest(create)}],
    }
    reply = await nc.request(
        subject, b'{"type": "Remove", "count": 1}', headers={"Radix-Expected-Version": "1", "Radix-Issuer": "cli"}
    )
    body = msgspec.json.decode(reply.data)
    assert body["status"] == "rejected"
    assert body["reason"] == "cannot remove 1: only 0 in stock"
    assert len(body["command_id"]) == 32  # generated when absent


async def test_namespaces_are_separate(nc: NATS, namespace: str) -> None:
    """One node serving two namespaces keeps their aggregates apart."""
    other = namespace + "-2"
    async with Node({namespace: [inventory], other: [inventory]}, nats=nc):
        one, two = Client(nc, inventory, namespace=namespace), Client(nc, inventory, namespace=other)
        await one.send(CreateItem(name="a"), aggregate_id="same")
        await one.send(CheckIn(count=1), aggregate_id="same")
        assert (await two.send(CreateItem(name="b"), aggregate_id="same")).version == 1


async def test_shutdown_answers_everything_queued_and_is_idempotent(nc: NATS, namespace: str, client: Client) -> None:
    """Stopping a node under load answers every command it took, stopping twice is harmless, no task is left."""
    await open_inboxes(nc)
    tasks_before = asyncio.all_tasks()
    node = Node({namespace: [inventory]}, nats=nc)
    await node.start()
    await client.send(CreateItem(name="w"), aggregate_id="sku-s")
    sends = [asyncio.create_task(client.send(CheckIn(count=1), aggregate_id="sku-s", timeout=3)) for _ in range(50)]
    await eventually(lambda: node.counts["accepted"] >= 5, what="some commands accepted")
    await node.stop()
    await node.stop()
    results = await asyncio.gather(*sends, return_exceptions=True)
    accepted = [r for r in results if not isinstance(r, BaseException)]
    assert all(isinstance(r, TimeoutError) for r in results if isinstance(r, BaseException))
    assert sorted(r.version for r in accepted) == list(range(2, 2 + len(accepted)))
    async with JetStreamEventStore(nc) as store:
        events = [
            e for c in await store.read(Address(namespace, "inventory", "InventoryItem", "sku-s")) for e in c.events
        ]
    assert [e.version for e in events] == list(range(1, 2 + len(accepted)))  # one event per accepted command
    # No task is left (nats-py finishes the tasks of cancelled subscriptions a moment later).
    await eventually(lambda: asyncio.all_tasks() <= tasks_before, timeout=2, what="no task left")


async def test_a_stop_asked_before_the_node_takes_its_first_step_stops_it(nc: NATS, namespace: str) -> None:
    """A stop that lands before the node's supervisor has run at all still leaves it stopped: `start`
    returns, and whoever waits for the stop is woken."""
    node = Node({namespace: [inventory]}, nats=nc)
    asyncio.get_running_loop().call_soon(node.request_stop)  # runs after start() has made the supervisor
    async with asyncio.timeout(5):
        assert await node.start() is node
        await node.wait_stopped()
    assert node.state is NodeState.STOPPED
    await node.stop()  # and stopping again is harmless


async def test_run_serves_until_cancelled(nc: NATS, namespace: str, client: Client) -> None:
    """`Node.run()` serves until its task is cancelled, then stops cleanly."""
    node = Node({namespace: [inventory]}, nats=nc)
    running = asyncio.create_task(node.run())
    assert (await client.send(CreateItem(name="w"), aggregate_id="sku-run")).version == 1
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert node.live_actors == 0
    with pytest.raises(CommandTimeoutError):
        await client.send(CheckIn(count=1), aggregate_id="sku-run", timeout=0.5)


async def test_client_retries_until_a_node_answers(nc: NATS, namespace: str, client: Client) -> None:
    """A command sent before any node serves it is retried with the same id and applied once."""
    pending = asyncio.create_task(client.send(CreateItem(name="w"), aggregate_id="sku-r", timeout=20))
    async with Node({namespace: [inventory]}, nats=nc):
        result = await pending
    assert result.version == 1
    assert await commit_count(nc, namespace) == 1


async def test_group_commit(nc: NATS, namespace: str, client: Client) -> None:
    """Commands queued for one aggregate are decided in turn and written as few commits, each answered alone."""
    async with Node({namespace: [inventory]}, nats=nc, config=NodeConfig(actors=ActorConfig(idle_timeout=0.3))) as node:
        await client.send(CreateItem(name="w"), aggregate_id="g")
        # 30 commands: within the 32 latest a node remembers, so a retry after passivation is recognised.
        sends = [client.send(CheckIn(count=1), aggregate_id="g", command_id=f"g-{i}") for i in range(30)]
        results = await asyncio.gather(*sends, client.send(Remove(count=999), aggregate_id="g"), return_exceptions=True)
        accepted = [r for r in results if not isinstance(r, BaseException)]
        assert sorted(r.version for r in accepted) == list(range(2, 32))
        assert all(len(r.events) == 1 for r in accepted)
        assert isinstance(results[-1], CommandRejectedError)
        async with JetStreamEventStore(nc) as store:
            commits = await store.read(Address(namespace, "inventory", "InventoryItem", "g"))
        events = [e for c in commits for e in c.events]
        assert [e.version for e in events] == list(range(1, 32))
        assert sorted(e.command_id for e in events[1:]) == sorted(f"g-{i}" for i in range(30))
        assert len(commits) < 31  # grouped
        seventh = next(r for r in accepted if r.command_id == "g-7")
        await eventually(lambda: node.live_actors == 0, what="passivation")
        again = await client.send(CheckIn(count=1), aggregate_id="g", command_id="g-7")
        assert (again.version, again.command_id) == (seventh.version, "g-7")


async def test_commands_past_the_route_cache_are_served(
    nc: NATS, namespace: str, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cache of validated command subjects starts again when full; every command is still served."""
    monkeypatch.setattr(intake, "ROUTES_KEPT", 4)
    async with Node({namespace: [inventory]}, nats=nc):
        for round_ in (1, 2):
            for n in range(10):
                accepted = await client.send(
                    CreateItem(name="r") if round_ == 1 else CheckIn(count=1), aggregate_id=f"r-{n}"
                )
                assert accepted.version == round_


async def test_an_aggregate_is_read_from_its_owners_live_state(
    node: Node, client: Client, nc: NATS, namespace: str
) -> None:
    """A read answers the aggregate's version and state, after every command acknowledged before it; over
    the wire with any NATS client, and through the client with the state typed."""
    await client.send(CreateItem(name="w"), aggregate_id="r-1")
    await client.send(CheckIn(count=3), aggregate_id="r-1")
    read = await client.read("InventoryItem", "r-1")
    assert (read.version, read.state) == (2, ItemState(name="w", count=3))
    subject = query_subject(Address(namespace, "inventory", "InventoryItem", "r-1"))
    raw = await nc.request(subject, b"", timeout=5)
    assert raw.headers is not None
    assert (raw.headers["Radix-Status"], raw.headers["Radix-Node"]) == ("ok", "node-a")
    assert msgspec.json.decode(raw.data) == {"status": "ok", "version": 2, "state": {"name": "w", "count": 3}}
    sends = [client.send(CheckIn(count=1), aggregate_id="r-1") for _ in range(20)]
    await asyncio.gather(*sends)
    assert (await client.read("InventoryItem", "r-1")).version == 22


async def test_an_aggregate_never_written_reads_as_its_initial_state(node: Node, client: Client) -> None:
    """No events yet: version 0 and the aggregate's initial state, not an error."""
    read = await client.read("InventoryItem", "nobody")
    assert (read.version, read.state) == (0, ItemState())


async def test_an_aggregate_shows_its_state_its_own_way(node: Node, nc: NATS, namespace: str) -> None:
    """An aggregate that defines `show` is read as it shows itself; a bad address is a clear error."""
    gadgets_client = Client(nc, gadgets, namespace=namespace)
    await gadgets_client.send(Poke(), aggregate_id="g-show")
    read = await gadgets_client.read("Gadget", "g-show")
    assert (read.version, read.state) == (1, {"events": 1, "note": "shown by the aggregate's own rule"})
    bad = await nc.request(f"radix.{namespace}.gadgets.get.Gadget.a.b", b"", timeout=5)
    body = msgspec.json.decode(bad.data)
    assert body["status"] == "error"
    assert body["reason"].startswith("invalid aggregate id 'a.b'")
    with pytest.raises(InvalidNameError, match="invalid aggregate type 'Nope'"):
        await gadgets_client.read("Nope", "x")


@pytest.mark.parametrize(
    "reply_to",
    [
        "radix.{ns}.inventory.evt.InventoryItem.victim",  # it would land in the events stream
        "$KV.radix_{ns}_leases.inventory.InventoryItem.victim",  # in the leases bucket
        "$JS.API.STREAM.DELETE.radix_{ns}_inventory",  # at the JetStream API
    ],
)
async def test_a_command_asking_to_be_answered_on_radix_or_server_subjects_is_dropped(
    node: Node, client: Client, nc: NATS, namespace: str, reply_to: str
) -> None:
    """A bad command whose reply subject is an events subject used to have its error published there, into
    the events stream: from then on every command to that aggregate answered `error`. Such a command is
    dropped unanswered and counted; nothing is stored, and the aggregate serves on."""
    await client.send(CreateItem(name="v"), aggregate_id="victim")
    subject = command_subject(Address(namespace, "inventory", "InventoryItem", "victim"))
    for payload in (b"not json", b'{"type": "CheckIn", "count": 1}'):
        await nc.publish(subject, payload, reply=reply_to.format(ns=namespace))
    await eventually(lambda: node.status().commands.get("dropped") == 2, what="both commands dropped")
    assert (await client.send(CheckIn(count=2), aggregate_id="victim")).version == 2
    assert await commit_count(nc, namespace) == 2


class Add(Command):
    text: str


class Added(Event):
    text: str


class Pile(Aggregate[list[str], Add, Added]):
    """Keeps every text it is given, and shows them all."""

    def initial_state(self) -> list[str]:
        return []

    def evolve(self, state: list[str], event: Added) -> list[str]:
        return [*state, event.text]

    def decide(self, state: list[str], command: Add) -> list[Added]:
        return [Added(text=command.text)]


piles = BoundedContext("piles", [Pile()])


async def test_a_read_of_a_state_over_max_payload_is_an_error_and_the_node_stays_connected(
    nc: NATS, namespace: str
) -> None:
    """A state shown larger than the server's max_payload was published anyway: the server closed the
    node's connection for good. The reader is told why instead, and the node serves on."""
    async with Node({namespace: [piles]}, nats=nc, config=NodeConfig(node_id="piles-1")):
        client = Client(nc, piles, namespace=namespace)
        for _ in range(12):  # 1.2 MB shown, over the test server's 1 MiB
            await client.send(Add(text="x" * 100_000), aggregate_id="p-1")
        with pytest.raises(ReadError, match="over the server's max_payload of 1048576"):
            await client.read("Pile", "p-1")
        assert (await client.send(Add(text="y"), aggregate_id="p-1")).version == 13
        assert not nc.is_closed


async def test_a_node_whose_connection_closed_for_good_stops_and_says_why(nats_server: EmbeddedNats) -> None:
    """nats-py gives up on a connection after some server errors; the node used to stay up, deaf, for
    ever. It stops, with the reason (`radix node` then exits 1, for its supervisor to start it again)."""
    node = Node({"closing": [inventory]}, nats=ConnectOptions(servers=[nats_server.url]), config=NodeConfig())
    await node.start()
    assert node.failure is None
    await node.nc.close()  # as nats-py does when it gives up: not the node's own stop
    await asyncio.wait_for(node.wait_stopped(), 30)
    assert node.failure == "its NATS connection closed for good"
    assert node.state is NodeState.STOPPED


async def test_frames_nats_py_cannot_read_leave_the_node_listening(
    node: Node, client: Client, nats_server: EmbeddedNats, namespace: str
) -> None:
    """A header block of exactly `NATS/1.0` and a subject that is not UTF-8 each raised out of nats-py's
    parser and ended its read loop: the node heard nothing until the pings timed out and lost its
    liveness. A lone carriage return in a subject or reply subject, which the server passes on, made
    nats-py's parser call the frame malformed and reconnect; a header block of digits (`0`) was read as the
    frame's size, and the parser lost its place. Each is dropped and counted; the node's
    connection stays up and answers the next command at once."""
    await client.send(CreateItem(name="w"), aggregate_id="sku-raw")
    subject = f"radix.{namespace}.inventory.cmd.InventoryItem".encode()
    before = guard.dropped()
    assert await send_raw_frames(
        nats_server.url,
        b"HPUB " + subject + b".sku-raw 8 8\r\nNATS/1.0\r\n",
        b"PUB " + subject + b".\xff\xfe 2\r\n{}\r\n",
        b"PUB " + subject + b".a\rb 2\r\n{}\r\n",
        b"PUB " + subject + b".sku-raw _INBOX.x\ry 2\r\n{}\r\n",
        b"HPUB " + subject + b".c\rd _INBOX.z 12 14\r\nNATS/1.0\r\n\r\n{}\r\n",
        b"HPUB " + subject + b".sku-raw 1 1\r\n0\r\n",
    )
    await eventually(lambda: guard.dropped() >= before + 6, what="the six frames dropped")
    assert (await client.send(CheckIn(count=1), aggregate_id="sku-raw", timeout=2)).version == 2
    assert node.nc.stats["reconnects"] == 0
