"""Versions of the inventory context that break the rules of event evolution, for tests of what stops them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import msgspec

from radix.domain import Aggregate, BoundedContext, Event, SchemaVersion
from radix.examples.inventory import CheckIn, CreateItem, InventoryItemCommand, ItemState


def _checked_in(version: SchemaVersion, fields: list[tuple[str, type] | tuple[str, type, object]]) -> BoundedContext:
    """An inventory context whose item has one event, ItemsCheckedIn at `version` with `fields`."""

    class Events(Event):
        pass

    msgspec.defstruct("ItemsCheckedIn", fields, bases=(Events,), kw_only=True, namespace={"schema_version": version})

    class Item(Aggregate[ItemState, InventoryItemCommand, Events]):
        type_name = "InventoryItem"

        def decide(self, state: ItemState, command: InventoryItemCommand) -> Sequence[Events]:
            return []

    return BoundedContext("inventory", [Item()])


def checked_in_with_note_at_1_0() -> BoundedContext:
    """ItemsCheckedIn given a field without raising its version."""
    return _checked_in((1, 0), [("count", int), ("note", str, "")])


def checked_in_removed_count() -> BoundedContext:
    """ItemsCheckedIn 1.1 without `count`."""
    return _checked_in((1, 1), [("quantity", int, 0)])


def checked_in_retyped_count() -> BoundedContext:
    """ItemsCheckedIn 1.1 whose `count` is text."""
    return _checked_in((1, 1), [("count", str)])


def checked_in_numbered_note_at_1_2() -> BoundedContext:
    """ItemsCheckedIn 1.2 with a note that is a number: compatible with 1.0, not with 1.1 (whose note is text)."""
    return _checked_in((1, 2), [("count", int), ("note", int, 0)])


class BlindEvent(Event):
    """Events of an inventory 2.0 that reads major 2 only: it has no upcaster for ItemCreated 1.x."""


class ItemCreated(BlindEvent):
    schema_version: ClassVar[SchemaVersion] = (2, 0)
    title: str
    unit: str


class ItemsCheckedIn(BlindEvent):
    count: int


class ItemsRemoved(BlindEvent):
    count: int


class BlindItem(Aggregate[ItemState, InventoryItemCommand, BlindEvent]):
    """Inventory 2.0 on the state type of 1.0 (so a 1.0 snapshot fits it) and without an upcaster: the
    code that, without a check, would take a 1.0 snapshot for its state and write 2.0 events after it."""

    type_name = "InventoryItem"

    def initial_state(self) -> ItemState:
        return ItemState()

    def evolve(self, state: ItemState, event: BlindEvent) -> ItemState:
        if isinstance(event, ItemCreated):
            return ItemState(name=event.title, count=state.count)
        return ItemState(name=state.name, count=state.count + (event.count if isinstance(event, ItemsCheckedIn) else 0))

    def decide(self, state: ItemState, command: InventoryItemCommand) -> Sequence[BlindEvent]:
        if isinstance(command, CreateItem):
            return [ItemCreated(title=command.name, unit="each")]
        return [ItemsCheckedIn(count=command.count)] if isinstance(command, CheckIn) else []


blind = BoundedContext("inventory", [BlindItem()])
with_note = checked_in_with_note_at_1_0()
