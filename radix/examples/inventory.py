"""The inventory example: one aggregate type, `InventoryItem`.

Stock is checked in and removed; the count never goes below zero, and an item
must be created before stock moves. Concurrency rule: a concurrent check-in never
conflicts (adding stock commutes with everything), while a concurrent removal
conflicts with a `Remove`, because the issuer decided on a count that no longer holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import msgspec

from radix.domain import Aggregate, BoundedContext, Command, Event
from radix.errors import DomainError

Count = Annotated[int, msgspec.Meta(gt=0, le=1_000_000_000)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class InventoryCommand(Command):
    """Commands of the inventory context."""


class InventoryItemCommand(InventoryCommand):
    """Commands to one inventory item."""


class CreateItem(InventoryItemCommand):
    name: Name


class CheckIn(InventoryItemCommand):
    count: Count


class Remove(InventoryItemCommand):
    count: Count


class InventoryEvent(Event):
    """Events of the inventory context."""


class InventoryItemEvent(InventoryEvent):
    """Events of one inventory item."""


class ItemCreated(InventoryItemEvent):
    name: str


class ItemsCheckedIn(InventoryItemEvent):
    count: int


class ItemsRemoved(InventoryItemEvent):
    count: int


class ItemState(msgspec.Struct, frozen=True):
    """An item's state; `name` is None until the item is created."""

    name: str | None = None
    count: int = 0


class InventoryItem(Aggregate[ItemState, InventoryItemCommand, InventoryItemEvent]):
    """An item in stock."""

    def initial_state(self) -> ItemState:
        return ItemState()

    def evolve(self, state: ItemState, event: InventoryItemEvent) -> ItemState:
        match event:
            case ItemCreated(name=name):
                return ItemState(name=name, count=state.count)
            case ItemsCheckedIn(count=count):
                return ItemState(name=state.name, count=state.count + count)
            case ItemsRemoved(count=count):
                return ItemState(name=state.name, count=state.count - count)
        return state

    def decide(self, state: ItemState, command: InventoryItemCommand) -> Sequence[InventoryItemEvent]:
        match command:
            case CreateItem(name=name):
                if state.name is not None:
                    raise DomainError(f"item already exists as {state.name!r}")
                return [ItemCreated(name=name)]
            case CheckIn(count=count):
                if state.name is None:
                    raise DomainError("item does not exist: create it first")
                return [ItemsCheckedIn(count=count)]
            case Remove(count=count):
                if state.name is None:
                    raise DomainError("item does not exist: create it first")
                if count > state.count:
                    raise DomainError(f"cannot remove {count}: only {state.count} in stock")
                return [ItemsRemoved(count=count)]
        raise DomainError(f"{type(command).__name__} is not handled")

    def conflicts(self, command: InventoryItemCommand, concurrent: Sequence[InventoryItemEvent]) -> str | None:
        if isinstance(command, Remove):
            removed = sum(e.count for e in concurrent if isinstance(e, ItemsRemoved))
            if removed:
                return f"{removed} item(s) were removed concurrently; check the stock and try again"
        return None


inventory = BoundedContext("inventory", [InventoryItem()])
