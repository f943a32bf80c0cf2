"""The inventory example one major version on (docs/evolving-events.md): an item has a title and a unit.

`ItemCreated` 2.0 replaces `name` with `title` and adds `unit`, which has no default: a breaking
change, so a new major. The events stored as 1.x stay as they are; the upcaster `titled` reads
them as 2.0 (the name becomes the title, the unit "each"), so `evolve` only ever sees 2.0. The
state type changes too, so snapshots written by 1.x code are not used: the history is replayed.
A node on 1.x code answers commands to an aggregate that holds 2.0 events with an error that
names the version to deploy, and writes nothing to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import msgspec

from radix.domain import Aggregate, BoundedContext, Command, Event, SchemaVersion, upcaster
from radix.errors import DomainError
from radix.examples.inventory import Count, Name


class InventoryCommand(Command):
    """Commands of the inventory context."""


class InventoryItemCommand(InventoryCommand):
    """Commands to one inventory item."""


class CreateItem(InventoryItemCommand):
    title: Name
    unit: Name = "each"


class CheckIn(InventoryItemCommand):
    count: Count
    note: str = ""


class Remove(InventoryItemCommand):
    count: Count


class InventoryItemEvent(Event):
    """Events of one inventory item."""


class ItemCreated(InventoryItemEvent):
    schema_version: ClassVar[SchemaVersion] = (2, 0)
    title: str
    unit: str


class ItemsCheckedIn(InventoryItemEvent):
    schema_version: ClassVar[SchemaVersion] = (1, 1)
    count: int
    note: str = ""


class ItemsRemoved(InventoryItemEvent):
    count: int


@upcaster(ItemCreated, from_major=1)
def titled(data: dict[str, Any]) -> dict[str, Any]:
    """ItemCreated 1.x had a name and no unit: the name is the title, the unit 'each'."""
    return {"title": data["name"], "unit": "each"}


class Item(msgspec.Struct, frozen=True):
    """An item's state; `title` is None until the item is created."""

    title: str | None = None
    unit: str = "each"
    count: int = 0


class InventoryItem(Aggregate[Item, InventoryItemCommand, InventoryItemEvent]):
    """An item in stock, counted in its unit."""

    def initial_state(self) -> Item:
        return Item()

    def evolve(self, state: Item, event: InventoryItemEvent) -> Item:
        match event:
            case ItemCreated(title=title, unit=unit):
                return Item(title=title, unit=unit, count=state.count)
            case ItemsCheckedIn(count=count) | ItemsRemoved(count=count):
                moved = count if isinstance(event, ItemsCheckedIn) else -count
                return Item(title=state.title, unit=state.unit, count=state.count + moved)
        return state

    def decide(self, state: Item, command: InventoryItemCommand) -> Sequence[InventoryItemEvent]:
        if isinstance(command, CreateItem):
            if state.title is not None:
                raise DomainError(f"item already exists as {state.title!r}")
            return [ItemCreated(title=command.title, unit=command.unit)]
        if state.title is None:
            raise DomainError("item does not exist: create it first")
        if isinstance(command, CheckIn):
            return [ItemsCheckedIn(count=command.count, note=command.note)]
        if isinstance(command, Remove) and command.count > state.count:
            raise DomainError(f"cannot remove {command.count} {state.unit}: only {state.count} in stock")
        return [ItemsRemoved(count=command.count)] if isinstance(command, Remove) else []


inventory = BoundedContext("inventory", [InventoryItem()], upcasters=[titled])
