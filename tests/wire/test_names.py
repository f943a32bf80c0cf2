"""Names: every name is validated, and every subject, stream and bucket follows the storage layout."""

from __future__ import annotations

import pytest

from radix import Address, InvalidNameError
from radix.wire import names as n


def test_subjects_streams_and_buckets() -> None:
    """Names follow the layout of docs/storage.md."""
    a = Address("tenant-a", "inventory", "InventoryItem", "sku-42")
    assert n.event_subject(a) == "radix.tenant-a.inventory.evt.InventoryItem.sku-42"
    assert n.command_subject(a) == "radix.tenant-a.inventory.cmd.InventoryItem.sku-42"
    assert n.log_subject(a) == "radix.tenant-a.inventory.log.InventoryItem.sku-42"
    assert n.context_filter("tenant-a", "inventory", "evt") == "radix.tenant-a.inventory.evt.>"
    assert n.namespace_filter("tenant-a") == "radix.tenant-a.>"
    assert n.events_stream("tenant-a", "inventory") == "radix_tenant-a_inventory_events"
    assert n.commands_stream("tenant-a", "inventory") == "radix_tenant-a_inventory_commands"
    assert n.node_inbox("tenant-a", "node-1") == "radix.tenant-a._node.node-1"
    assert n.leases_bucket("tenant-a") == "radix_tenant-a_leases"
    assert n.nodes_bucket("tenant-a") == "radix_tenant-a_nodes"
    assert n.snapshots_bucket("tenant-a") == "radix_tenant-a_snapshots"
    assert n.schemas_bucket("tenant-a") == "radix_tenant-a_schemas"
    assert str(a) == "tenant-a/inventory/InventoryItem/sku-42"


@pytest.mark.parametrize(
    "bad",
    ["", "Upper", "a.b", "a_b", "a*", ">", "a b", "-a", "a-", "x" * 33, "é", 7, None],
)
def test_invalid_namespaces(bad: object) -> None:
    """Namespaces and contexts are lowercase letters, digits and inner '-' only."""
    with pytest.raises(InvalidNameError) as info:
        n.validate_namespace(bad)
    assert info.value.kind == "namespace"
    assert info.value.value == bad
    with pytest.raises(InvalidNameError):
        n.validate_context(bad)


@pytest.mark.parametrize("bad", ["", "1Item", "Item.Type", "Item-Type", "Item Type", "I*", "x" * 65])
def test_invalid_aggregate_types(bad: str) -> None:
    """Aggregate types are identifiers."""
    with pytest.raises(InvalidNameError, match="invalid aggregate type"):
        n.validate_aggregate_type(bad)


@pytest.mark.parametrize("good", ["a", "sku-42", "ORDER_7", "0f8fad5b-d9cb-469f-a165-70867728950e", "a=b/c"])
def test_valid_aggregate_ids(good: str) -> None:
    """Common id shapes (slugs, UUIDs, base64url-ish) are accepted."""
    assert n.validate_aggregate_id(good) == good


@pytest.mark.parametrize("bad", ["", "a.b", "a*b", "a>b", "a b", "a\nb", "x" * 129, "a:b", "ü"])
def test_invalid_aggregate_ids(bad: str) -> None:
    """Ids that are not one safe subject token and KV key are refused with the rule."""
    with pytest.raises(InvalidNameError) as info:
        n.validate_aggregate_id(bad)
    assert "aggregate id" in str(info.value)


def test_address_validates_every_part() -> None:
    """An Address cannot be built from a bad part, so no bad subject is ever built."""
    with pytest.raises(InvalidNameError, match="namespace"):
        Address("a.b", "inventory", "Item", "x")
    with pytest.raises(InvalidNameError, match="aggregate type"):
        Address("ns", "inventory", "It em", "x")
