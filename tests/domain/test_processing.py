"""Reactions and projections as declared: which events they are given, what they return, pure."""

from __future__ import annotations

import pytest

from radix import BoundedContext, DefinitionError, InvalidNameError, Put, Send, reaction
from radix.domain.processing import Delete, Selection, Update, apply_writes, command_id_for
from radix.examples.inventory import InventoryItem, ItemCreated, ItemsCheckedIn, ItemsRemoved
from radix.testing import project, react, record
from tests.processing import Note, ledger, note, stock_into


def test_a_selection_matches_event_types_aggregate_types_and_subject_wildcards() -> None:
    everything = Selection()
    assert everything.matches("InventoryItem", "sku-1", "ItemCreated")
    by_event = Selection(events=frozenset({"ItemCreated"}))
    assert by_event.matches("InventoryItem", "sku-1", "ItemCreated")
    assert not by_event.matches("InventoryItem", "sku-1", "ItemsRemoved")
    by_type = Selection(aggregates=frozenset({"Account"}))
    assert not by_type.matches("InventoryItem", "sku-1", "ItemCreated")
    by_subject = Selection(subjects=("InventoryItem.sku-1", "Account.*"))
    assert by_subject.matches("InventoryItem", "sku-1", "X")
    assert not by_subject.matches("InventoryItem", "sku-2", "X")
    assert by_subject.matches("Account", "a-9", "X")
    assert Selection(subjects=(">",)).matches("Anything", "at-all", "X")


def test_a_reaction_returns_the_commands_to_send() -> None:
    sent = react(note, record(ItemsCheckedIn(count=3), aggregate_id="sku-1", version=4))
    assert sent == [Send(Note(source="sku-1", version=4, count=3), aggregate_id="all", context=ledger)]


def test_a_key_value_projection_is_the_writes_it_returns() -> None:
    stock = stock_into("stock")
    view = project(
        stock,
        [
            record(ItemCreated(name="w"), aggregate_id="sku-1", version=1),
            record(ItemsCheckedIn(count=5), aggregate_id="sku-1", version=2),
            record(ItemsRemoved(count=2), aggregate_id="sku-1", version=3),
        ],
    )
    assert view == {"sku-1": {"name": "w", "count": 3, "version": 3}}
    assert project(stock, [], {"a": 1}) == {"a": 1}


def test_writes_put_update_and_delete_in_order() -> None:
    view: dict[str, object] = {}
    apply_writes(
        view, [Put("a", 1), Update("a", lambda v: v + 1), Update("b", lambda v: v + 1, default=10), Delete("a")]
    )
    assert view == {"b": 11}


def test_names_and_attempts_are_checked_when_declared() -> None:
    with pytest.raises(InvalidNameError, match="reaction or projection name"):
        reaction("Not_Valid")(lambda r: [])
    with pytest.raises(DefinitionError, match="attempts must be at least 1"):
        reaction("ok", attempts=0)(lambda r: [])
    with pytest.raises(DefinitionError, match="on= takes Event types"):
        reaction("ok", on=[int])(lambda r: [])  # type: ignore[list-item]
    with pytest.raises(DefinitionError, match="names note-check-ins twice"):
        BoundedContext("inventory", [InventoryItem()], reactions=[note, note])


def test_a_reactions_command_ids_derive_from_the_event() -> None:
    event = record(ItemsCheckedIn(count=1), aggregate_id="sku-1", version=7, aggregate_type="InventoryItem")
    assert command_id_for("note", "inventory", event, 0) == "note:inventory/InventoryItem/sku-1@7:0"
    assert command_id_for("note", "inventory", event, 0) == command_id_for("note", "inventory", event, 0)
    long = record(ItemsCheckedIn(count=1), aggregate_id="x" * 128, version=7, aggregate_type="InventoryItem")
    hashed = command_id_for("note", "inventory", long, 1)
    assert len(hashed) <= 128
    assert hashed.startswith("note:")
    assert hashed.endswith(":1")
    assert hashed != command_id_for("note", "inventory", long, 0)
