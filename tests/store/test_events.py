"""One contract for every event store: the in-memory twin and JetStream behave the same."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import msgspec
import pytest
from nats.aio.client import Client as NATS

from radix import (
    Address,
    Commit,
    CommitTooLargeError,
    CorruptCommitError,
    EventData,
    EventStore,
    InMemoryEventStore,
    InvalidNameError,
    JetStreamEventStore,
    StoreConfig,
    VersionConflictError,
    Writer,
)
from radix.wire.names import context_filter, event_subject, events_stream


def event(n: int, *, size: int = 0) -> EventData:
    data = {"n": n, "pad": "x" * size} if size else {"n": n}
    return EventData(type="Happened", schema="1.0", data=msgspec.Raw(msgspec.json.encode(data)))


def numbers(commits: Sequence[Commit]) -> list[int]:
    return [msgspec.json.decode(e.data)["n"] for c in commits for e in c.events]


class StoreContract:
    """The behaviour every `EventStore` must have; subclasses provide the `store` fixture."""

    @pytest.fixture
    def address(self, namespace: str) -> Address:
        return Address(namespace, "shop", "Cart", "cart-1")

    async def test_versions_start_at_one_and_are_contiguous(self, store: EventStore, address: Address) -> None:
        """The store assigns versions 1, 2, 3... across commits of one or more events."""
        c1 = await store.append(address, [event(1)], expected_version=0, command_id="c1")
        c2 = await store.append(address, [event(2), event(3)], expected_version=1, command_id="c2")
        c3 = await store.append(address, [event(4)], expected_version=3, command_id="c3")
        assert [(c.first_version, c.version) for c in (c1, c2, c3)] == [(1, 1), (2, 3), (4, 4)]
        commits = await store.read(address)
        assert [e.version for c in commits for e in c.events] == [1, 2, 3, 4]
        assert numbers(commits) == [1, 2, 3, 4]
        assert [c.command_id for c in commits] == ["c1", "c2", "c3"]
        assert await store.version(address) == 4
        assert c1.position < c2.position < c3.position

    async def test_a_commit_names_its_writer(self, store: EventStore, address: Address) -> None:
        """The writing node and its lease epoch are stored with each commit and read back; they may be absent."""
        written = await store.append(address, [event(1)], expected_version=0, command_id="c1", writer=Writer("n1", 7))
        await store.append(address, [event(2)], expected_version=1, command_id="c2", writer=Writer("n2", 12))
        await store.append(address, [event(3)], expected_version=2, command_id="c3")
        assert written.writer == Writer("n1", 7)
        assert [c.writer for c in await store.read(address)] == [Writer("n1", 7), Writer("n2", 12), None]
        assert [c.writer for c in await store.read(address, after=1)] == [Writer("n2", 12), None]

    async def test_a_commit_is_read_back_by_its_position(self, store: EventStore, address: Address) -> None:
        """`commit_at` finds one commit by stream position, and nothing where the aggregate has none."""
        other = Address(address.namespace, address.context, address.aggregate_type, "other")
        first = await store.append(address, [event(1)], expected_version=0, command_id="c1")
        elsewhere = await store.append(other, [event(9)], expected_version=0, command_id="o1")
        second = await store.append(address, [event(2), event(3)], expected_version=1, command_id="c2")
        found = await store.commit_at(address, second.position)
        assert found is not None
        assert (found.command_id, found.version, numbers([found])) == ("c2", 3, [2, 3])
        assert (await store.commit_at(address, first.position)) is not None
        assert await store.commit_at(address, elsewhere.position) is None
        assert await store.commit_at(address, second.position + 100) is None

    async def test_head_is_the_position_of_the_last_commit(self, store: EventStore, address: Address) -> None:
        """`head` names the aggregate's last commit by stream position, 0 before the first."""
        assert await store.head(address) == 0
        await store.append(address, [event(1)], expected_version=0, command_id="c1")
        last = await store.append(address, [event(2)], expected_version=1, command_id="c2")
        assert await store.head(address) == last.position

    async def test_a_new_aggregate_is_at_version_zero(self, store: EventStore, address: Address) -> None:
        """An aggregate with no events has version 0 and reads as empty."""
        assert await store.version(address) == 0
        assert await store.read(address) == []

    async def test_commit_is_atomic(self, store: EventStore, address: Address) -> None:
        """A refused multi-event commit writes none of its events."""
        await store.append(address, [event(1)], expected_version=0, command_id="c1")
        with pytest.raises(VersionConflictError):
            await store.append(address, [event(2), event(3), event(4)], expected_version=0, command_id="c2")
        commits = await store.read(address)
        assert numbers(commits) == [1]
        assert await store.version(address) == 1

    async def test_conflict_carries_the_actual_version(self, store: EventStore, address: Address) -> None:
        """A stale expected version is refused with the version the aggregate really has."""
        await store.append(address, [event(1), event(2)], expected_version=0, command_id="c1")
        with pytest.raises(VersionConflictError) as info:
            await store.append(address, [event(3)], expected_version=1, command_id="c2")
        assert (info.value.expected, info.value.actual) == (1, 2)
        with pytest.raises(VersionConflictError) as ahead:
            await store.append(address, [event(3)], expected_version=5, command_id="c3")
        assert (ahead.value.expected, ahead.value.actual) == (5, 2)
        assert str(address) in str(info.value)

    async def test_fifty_racing_appenders_one_winner(self, store: EventStore, address: Address) -> None:
        """Of 50 appends racing for the same version exactly one lands; every loser gets a conflict."""
        results = await asyncio.gather(
            *(store.append(address, [event(i)], expected_version=0, command_id=f"c{i}") for i in range(50)),
            return_exceptions=True,
        )
        winners = [r for r in results if not isinstance(r, BaseException)]
        losers = [r for r in results if isinstance(r, BaseException)]
        assert len(winners) == 1
        assert len(losers) == 49
        assert all(isinstance(e, VersionConflictError) and e.actual == 1 for e in losers)
        assert await store.version(address) == 1

    async def test_fifty_retrying_appenders_one_commit_per_version(self, store: EventStore, address: Address) -> None:
        """50 appenders that retry on conflict leave versions 1..50, one commit each, no command twice."""
        conflicts = 0

        async def appender(i: int) -> None:
            nonlocal conflicts
            while True:
                version = await store.version(address)
                try:
                    await store.append(address, [event(i)], expected_version=version, command_id=f"c{i}")
                    return
                except VersionConflictError:
                    conflicts += 1

        await asyncio.wait_for(asyncio.gather(*(appender(i) for i in range(50))), timeout=60)
        commits = await store.read(address)
        assert [c.version for c in commits] == list(range(1, 51))
        assert sorted(numbers(commits)) == list(range(50))
        assert sorted(c.command_id for c in commits) == sorted(f"c{i}" for i in range(50))
        assert conflicts > 0  # they really raced

    async def test_reappending_the_last_commit_answers_the_original(self, store: EventStore, address: Address) -> None:
        """A retried command that made the last commit gets that commit back, and nothing is appended."""
        original = await store.append(
            address, [event(1)], expected_version=0, command_id="c1", correlation_id="corr", issuer="alice"
        )
        again = await store.append(address, [event(99)], expected_version=0, command_id="c1")
        assert again == original
        assert (again.correlation_id, again.issuer) == ("corr", "alice")
        assert await store.version(address) == 1
        assert numbers(await store.read(address)) == [1]

    async def test_reappending_within_the_duplicate_window_is_deduplicated(
        self, store: EventStore, address: Address
    ) -> None:
        """A retry of a committed command at the current version is answered with the original commit."""
        first = await store.append(address, [event(1)], expected_version=0, command_id="c1")
        await store.append(address, [event(2)], expected_version=1, command_id="c2")
        again = await store.append(address, [event(1)], expected_version=2, command_id="c1")
        assert again == first
        assert await store.version(address) == 2

    async def test_a_stale_retry_of_an_older_commit_is_a_conflict(self, store: EventStore, address: Address) -> None:
        """The version check comes first: a retry that is neither current nor the last commit conflicts."""
        await store.append(address, [event(1)], expected_version=0, command_id="c1")
        await store.append(address, [event(2)], expected_version=1, command_id="c2")
        with pytest.raises(VersionConflictError):
            await store.append(address, [event(1)], expected_version=0, command_id="c1")

    async def test_same_command_id_on_two_aggregates_is_two_commits(self, store: EventStore, address: Address) -> None:
        """Command ids are per aggregate: another aggregate's command with the same id is not a duplicate."""
        other = Address(address.namespace, address.context, address.aggregate_type, "cart-2")
        await store.append(address, [event(1)], expected_version=0, command_id="same")
        commit = await store.append(other, [event(2)], expected_version=0, command_id="same")
        assert commit.address == other
        assert numbers(await store.read(other)) == [2]

    async def test_read_after_a_version(self, store: EventStore, address: Address) -> None:
        """Reading after version n returns only later events, trimming a commit that straddles n."""
        await store.append(address, [event(1), event(2)], expected_version=0, command_id="c1")
        await store.append(address, [event(3), event(4)], expected_version=2, command_id="c2")
        await store.append(address, [event(5)], expected_version=4, command_id="c3")
        assert numbers(await store.read(address, after=2)) == [3, 4, 5]
        assert numbers(await store.read(address, after=3)) == [4, 5]
        assert numbers(await store.read(address, after=5)) == []

    async def test_read_from_a_position(self, store: EventStore, address: Address) -> None:
        """A position hint (as a snapshot records) skips earlier commits."""
        first = await store.append(address, [event(1)], expected_version=0, command_id="c1")
        await store.append(address, [event(2)], expected_version=1, command_id="c2")
        assert numbers(await store.read(address, after=1, start=first.position + 1)) == [2]

    async def test_a_read_from_the_leader_gives_the_same_commits(self, store: EventStore, address: Address) -> None:
        """`leader=True` reads the same commits, trimmed and hinted alike, with their writers."""
        other = Address(address.namespace, address.context, address.aggregate_type, "other")
        first = await store.append(address, [event(1), event(2)], expected_version=0, command_id="c1")
        await store.append(other, [event(9)], expected_version=0, command_id="o1")
        await store.append(address, [event(3)], expected_version=2, command_id="c2", writer=Writer("n1", 3))
        for after, start in ((0, 0), (1, 0), (2, first.position + 1), (3, 0)):
            read = await store.read(address, after=after, start=start)
            from_leader = await store.read(address, after=after, start=start, leader=True)
            assert [(c.position, c.events, c.writer) for c in from_leader] == [
                (c.position, c.events, c.writer) for c in read
            ]
        assert numbers(await store.read(address, after=1, leader=True)) == [2, 3]

    async def test_long_history_reads_in_order(self, store: EventStore, address: Address) -> None:
        """A history longer than one read batch comes back complete and in order."""
        for i in range(120):
            await store.append(address, [event(i)], expected_version=i, command_id=f"c{i}")
        commits = await store.read(address)
        assert numbers(commits) == list(range(120))
        assert numbers(await store.read(address, after=100)) == list(range(100, 120))

    async def test_namespaces_are_isolated(self, store: EventStore, address: Address) -> None:
        """The same aggregate in two namespaces has two independent histories."""
        elsewhere = Address(address.namespace + "-b", address.context, address.aggregate_type, address.aggregate_id)
        await store.append(address, [event(1)], expected_version=0, command_id="c1")
        await store.append(elsewhere, [event(7), event(8)], expected_version=0, command_id="c1")
        assert numbers(await store.read(address)) == [1]
        assert numbers(await store.read(elsewhere)) == [7, 8]
        assert (await store.version(address), await store.version(elsewhere)) == (1, 2)

    @pytest.mark.parametrize("bad_id", ["a.b", "a*", ">", "a b", "", "x" * 129, "tab\t", "ünï"])
    def test_invalid_aggregate_ids_are_rejected(self, bad_id: str, namespace: str) -> None:
        """An id that is not a single safe subject token is refused before any subject is built."""
        with pytest.raises(InvalidNameError) as info:
            Address(namespace, "shop", "Cart", bad_id)
        assert "aggregate id" in str(info.value)

    async def test_oversized_commit_is_refused_before_writing(self, store: EventStore, address: Address) -> None:
        """A commit over the server's max payload is a clear error and writes nothing."""
        with pytest.raises(CommitTooLargeError) as info:
            await store.append(address, [event(1, size=1024 * 1024)], expected_version=0, command_id="c1")
        assert info.value.limit == 1024 * 1024
        assert await store.version(address) == 0

    async def test_empty_commit_is_refused(self, store: EventStore, address: Address) -> None:
        """A commit needs at least one event."""
        with pytest.raises(ValueError, match="at least one event"):
            await store.append(address, [], expected_version=0, command_id="c1")

    async def test_commit_records_its_cause(self, store: EventStore, address: Address) -> None:
        """Every stored event names its command, correlation id and issuer."""
        await store.append(
            address, [event(1), event(2)], expected_version=0, command_id="c1", correlation_id="k", issuer="bob"
        )
        (commit,) = await store.read(address)
        assert {(e.command_id, e.correlation_id, e.issuer) for e in commit.events} == {("c1", "k", "bob")}


class TestInMemoryEventStore(StoreContract):
    @pytest.fixture
    def store(self) -> EventStore:
        return InMemoryEventStore()


class TestJetStreamEventStore(StoreContract):
    @pytest.fixture
    async def store(self, nc: NATS) -> AsyncIterator[EventStore]:
        # Small batches so that the long-history test crosses batch pages and the
        # switch to an ordered consumer.
        async with JetStreamEventStore(nc, config=StoreConfig(batch=16, ordered_consumer_above=40)) as s:
            yield s

    async def test_stream_settings(self, nc: NATS, store: JetStreamEventStore, address: Address) -> None:
        """The events stream is created on first use with the settings production needs."""
        await store.append(address, [event(1)], expected_version=0, command_id="c1")
        info = await nc.jetstream().stream_info(events_stream(address.namespace, address.context))
        config = info.config
        assert config.subjects == [context_filter(address.namespace, "shop", "evt")]
        assert config.storage == "file"
        assert (config.allow_direct, config.allow_atomic, config.deny_delete) == (True, True, True)
        assert config.duplicate_window == 120
        assert config.num_replicas == 1

    async def test_commit_on_the_wire(self, nc: NATS, store: JetStreamEventStore, address: Address) -> None:
        """One JetStream message per commit, with the headers and JSON body of the storage contract."""
        await store.append(
            address, [event(1), event(2)], expected_version=0, command_id="c1", correlation_id="k", issuer="ann"
        )
        msg = await nc.jetstream().get_last_msg(events_stream(address.namespace, "shop"), event_subject(address))
        assert msg.headers is not None
        assert {k: msg.headers[k] for k in msg.headers if k.startswith("Radix-") or k == "Nats-Msg-Id"} == {
            "Radix-Command-Id": "c1",
            "Radix-First-Version": "1",
            "Radix-Version": "2",
            "Radix-Correlation-Id": "k",
            "Radix-Issuer": "ann",
            "Nats-Msg-Id": "Cart.cart-1.c1",
        }
        assert msg.data is not None
        body = msgspec.json.decode(msg.data)
        assert body == {
            "events": [
                {
                    "type": "Happened",
                    "schema": "1.0",
                    "version": v,
                    "data": {"n": v},
                    "command_id": "c1",
                    "correlation_id": "k",
                    "issuer": "ann",
                }
                for v in (1, 2)
            ]
        }

    async def test_two_stores_fence_each_other(self, nc: NATS, address: Address) -> None:
        """A store whose cached position is stale is refused by the server, then recovers."""
        async with JetStreamEventStore(nc) as one, JetStreamEventStore(nc) as two:
            await one.append(address, [event(1)], expected_version=0, command_id="c1")
            await two.append(address, [event(2)], expected_version=1, command_id="c2")
            with pytest.raises(VersionConflictError) as info:
                await one.append(address, [event(3)], expected_version=1, command_id="c3")
            assert info.value.actual == 2
            await one.append(address, [event(3)], expected_version=2, command_id="c3")
            assert numbers(await two.read(address)) == [1, 2, 3]

    async def test_foreign_message_is_a_clear_error(
        self, nc: NATS, store: JetStreamEventStore, address: Address
    ) -> None:
        """A message on an aggregate's subject that is not a Radix commit is reported, not misread."""
        await store.append(address, [event(1)], expected_version=0, command_id="c1")
        await nc.jetstream().publish(event_subject(address), b"not json")
        with pytest.raises(CorruptCommitError) as info:
            await store.read(address)
        assert info.value.subject == event_subject(address)
