"""One contract for every snapshot store: the in-memory twin and the KV bucket behave the same."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import msgspec
import pytest
from nats.aio.client import Client as NATS

from radix import Address
from radix.store import InMemorySnapshotStore, KVSnapshotStore, Snapshot, SnapshotStore
from radix.wire.names import aggregate_key

Corrupt = Callable[[Address], Awaitable[None]]


def snapshot(version: int) -> Snapshot:
    return Snapshot(
        version=version,
        position=10 + version,
        fingerprint="f1",
        state=msgspec.Raw(msgspec.json.encode({"count": version})),
        applied=[("c1", 11, 1)],
        window_from=3,
        taken_at=1.5,
    )


class SnapshotContract:
    """The behaviour every `SnapshotStore` must have; subclasses provide `snapshots` and `corrupt`."""

    @pytest.fixture
    def address(self, namespace: str) -> Address:
        return Address(namespace, "shop", "Cart", "cart-1")

    async def test_none_until_one_is_saved(self, snapshots: SnapshotStore, address: Address) -> None:
        """An aggregate never snapshotted has no snapshot."""
        assert await snapshots.load(address) is None

    async def test_the_latest_is_read_back_as_saved(self, snapshots: SnapshotStore, address: Address) -> None:
        """A snapshot reads back whole (state, version, position, the ids it carries); a later one replaces it."""
        await snapshots.save(address, snapshot(1))
        assert await snapshots.load(address) == snapshot(1)
        await snapshots.save(address, snapshot(2))
        assert await snapshots.load(address) == snapshot(2)
        other = Address(address.namespace, "shop", "Cart", "cart-2")
        assert await snapshots.load(other) is None

    async def test_an_unreadable_snapshot_is_none(
        self, snapshots: SnapshotStore, address: Address, corrupt: Corrupt
    ) -> None:
        """A snapshot written by an incompatible version is ignored (activation replays), not an error."""
        await snapshots.save(address, snapshot(1))
        await corrupt(address)
        assert await snapshots.load(address) is None


class TestInMemorySnapshotStore(SnapshotContract):
    @pytest.fixture
    def snapshots(self) -> InMemorySnapshotStore:
        return InMemorySnapshotStore()

    @pytest.fixture
    def corrupt(self, snapshots: InMemorySnapshotStore) -> Corrupt:
        async def corrupt(address: Address) -> None:
            snapshots.snapshots[address] = b'{"version": "no"}'

        return corrupt


class TestKVSnapshotStore(SnapshotContract):
    @pytest.fixture
    def snapshots(self, nc: NATS) -> KVSnapshotStore:
        return KVSnapshotStore(nc)

    @pytest.fixture
    def corrupt(self, snapshots: KVSnapshotStore) -> Corrupt:
        async def corrupt(address: Address) -> None:
            await (await snapshots.bucket(address.namespace)).put(aggregate_key(address), b'{"version": "no"}')

        return corrupt
