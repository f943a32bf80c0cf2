"""One contract for every schema registry (the in-memory twin and the KV bucket), and registering a
context's schemas through it."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from nats.aio.client import Client as NATS

from radix import SchemaError
from radix.domain.schemas import EventSchema, schemas_of
from radix.examples import inventory as v1
from radix.examples import inventory_v1_1 as v1_1
from radix.examples import inventory_v2 as v2
from radix.examples.bank import bank
from radix.store import InMemorySchemaRegistry, KVSchemaRegistry, SchemaRegistry
from radix.store.schemas import register
from radix.wire.names import schema_key
from tests.evolved import checked_in_numbered_note_at_1_2, checked_in_removed_count, checked_in_with_note_at_1_0


class SchemaRegistryContract:
    """The behaviour every `SchemaRegistry` must have; subclasses provide `registry`."""

    async def test_a_version_is_added_once_and_read_back(self, registry: SchemaRegistry, namespace: str) -> None:
        """Adding answers None the first time and what is registered after; reading filters by context."""
        created, checked_in, _ = schemas_of(v1.inventory)
        assert await registry.schemas(namespace) == []
        stamped = dataclasses.replace(created, node="n1", at="2026-12-01T10:00:00Z")
        assert await registry.add(namespace, stamped) is None
        assert await registry.add(namespace, dataclasses.replace(created, node="n2")) == stamped
        await registry.add(namespace, checked_in)
        await registry.add(namespace, schemas_of(bank)[0])
        assert [s.key for s in await registry.schemas(namespace, "inventory")] == [created.key, checked_in.key]
        assert len(await registry.schemas(namespace)) == 3
        assert await registry.schemas(f"{namespace}-other") == []
        [read] = [s for s in await registry.schemas(namespace) if s.key == created.key]
        assert (read.node, read.at, read.hash, read.schema) == ("n1", stamped.at, created.hash, created.schema)

    async def test_registering_a_context_adds_what_is_new(self, registry: SchemaRegistry, namespace: str) -> None:
        """A context's first registration adds every type; the next adds nothing; 1.1 adds the new minor only."""
        assert {s.version for s in await register(registry, namespace, v1.inventory, "n1")} == {"1.0"}
        assert await register(registry, namespace, v1.inventory, "n2") == []
        [added] = await register(registry, namespace, v1_1.inventory, "n3")
        assert (added.key, added.node) == (schema_key("inventory", "ItemsCheckedIn", 1, 1), "n3")
        assert len(await register(registry, namespace, v2.inventory, "n4")) == 1  # ItemCreated 2.0

    async def test_a_changed_shape_under_a_version_is_refused(self, registry: SchemaRegistry, namespace: str) -> None:
        """Code whose ItemsCheckedIn 1.0 has another field cannot register: the error names the field."""
        await register(registry, namespace, v1.inventory, "n1")
        with pytest.raises(SchemaError) as refused:
            await register(registry, namespace, checked_in_with_note_at_1_0(), "n2")
        assert "inventory ItemsCheckedIn 1.0 is registered with another shape (by n1 at " in str(refused.value)
        assert refused.value.problems[0].split("): ")[1].startswith("field 'note' added, with a default")

    async def test_an_incompatible_minor_is_refused(self, registry: SchemaRegistry, namespace: str) -> None:
        """A 1.1 without a field of 1.0 is refused, whichever was registered first, and nothing is added."""
        await register(registry, namespace, v1.inventory, "n1")
        with pytest.raises(SchemaError, match="field 'count' removed"):
            await register(registry, namespace, checked_in_removed_count(), "n2")
        assert len(await registry.schemas(namespace, "inventory")) == 3
        other = f"{namespace}-b"  # the other way round: 1.1 first, then 1.0
        await register(registry, other, checked_in_removed_count(), "n2")
        with pytest.raises(
            SchemaError, match=r"ItemsCheckedIn 1\.0 is not compatible with inventory ItemsCheckedIn 1\.1"
        ):
            await register(registry, other, v1.inventory, "n1")

    async def test_nodes_registering_at_once_agree(self, registry: SchemaRegistry, namespace: str) -> None:
        """Three nodes starting together with the same code: each version is added by one of them."""
        added = await asyncio.gather(*(register(registry, namespace, v1.inventory, f"n{i}") for i in range(3)))
        assert sorted(len(a) for a in added)[-1] >= 1
        assert sum(len(a) for a in added) == 3
        assert len(await registry.schemas(namespace, "inventory")) == 3

    async def test_a_conflicting_minor_registered_meanwhile_is_withdrawn_and_refused(
        self, registry: SchemaRegistry, namespace: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Another node registers an incompatible 1.1 between this node's check and its write: this node
        withdraws its own 1.1 and refuses, leaving the registry to the other's 1.2, so that one can serve."""
        await register(registry, namespace, v1.inventory, "n1")
        their = checked_in_numbered_note_at_1_2()
        real = registry.add
        entered = False

        async def add_after_theirs(ns: str, schema: EventSchema) -> EventSchema | None:
            nonlocal entered
            if not entered:  # the other node's whole registration lands first
                entered = True
                await register(registry, ns, their, "n2")
            return await real(ns, schema)

        monkeypatch.setattr(registry, "add", add_after_theirs)
        with pytest.raises(SchemaError, match="another node registered a conflicting version meanwhile"):
            await register(registry, namespace, v1_1.inventory, "n3")
        monkeypatch.undo()
        assert {s.version: s.node for s in await registry.schemas(namespace) if s.type_name == "ItemsCheckedIn"} == {
            "1.0": "n1",
            "1.2": "n2",
        }
        assert await register(registry, namespace, their, "n2") == []  # the other node starts again


class TestInMemorySchemaRegistry(SchemaRegistryContract):
    @pytest.fixture
    def registry(self) -> InMemorySchemaRegistry:
        return InMemorySchemaRegistry()


class TestKVSchemaRegistry(SchemaRegistryContract):
    @pytest.fixture
    def registry(self, nc: NATS) -> KVSchemaRegistry:
        return KVSchemaRegistry(nc)

    async def test_a_value_that_is_not_a_schema_is_passed_over(
        self, registry: KVSchemaRegistry, namespace: str
    ) -> None:
        """Something else written into the bucket is not taken for a schema, and adding over it says what to do."""
        bucket = await registry.bucket(namespace)
        await bucket.put("inventory.ItemCreated.1.0", b"not json")
        assert await registry.schemas(namespace) == []
        with pytest.raises(SchemaError, match="is not a Radix schema: remove it with `nats kv del`"):
            await register(registry, namespace, v1.inventory, "n1")
