"""The inventory example one minor version on (docs/evolving-events.md): a check-in may carry a note.

`ItemsCheckedIn` 1.1 adds `note`, with a default: a compatible change, so the schema registry
accepts it beside 1.0, nodes on 1.0 and 1.1 serve one context at once, and each reads what the
other wrote (a 1.0 node leaves the note out; a 1.1 node reads 1.0 check-ins with the note "").
`CheckIn` takes the note too; a command with a note is refused by a 1.0 node (commands are
checked strictly), so send notes once every node runs 1.1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from radix.domain import Aggregate, BoundedContext, Command, Event, SchemaVersion
from radix.errors import DomainError
from radix.examples.inventory import Count, ItemState, Name


class InventoryCommand(Command):
    """Commands of the inventory context."""


class InventoryItemCommand(InventoryCommand):
    """Commands to one inventory item."""


class CreateItem(InventoryItemCommand):
    name: Name


class CheckIn(InventoryItemCommand):
    count: Count
    note: str = ""


class Remove(InventoryItemCommand):
    count: Count


class InventoryItemEvent(Event):
    """Events of one inventory item."""


class ItemCreated(InventoryItemEvent):
    name: str


class ItemsCheckedIn(InventoryItemEvent):
    schema_version: ClassVar[SchemaVersion] = (1, 1)
    count: int
    note: str = ""


class ItemsRemoved(InventoryItemEvent):
    count: int


class InventoryItem(Aggregate[ItemState, InventoryItemCommand, InventoryItemEvent]):
    """An item in stock, whose check-ins may carry a note."""

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
        if isinstance(command, CreateItem):
            if state.name is not None:
                raise DomainError(f"item already exists as {state.name!r}")
            return [ItemCreated(name=command.name)]
        if state.name is None:
            raise DomainError("item does not exist: create it first")
        if isinstance(command, CheckIn):
            return [ItemsCheckedIn(count=command.count, note=command.note)]
        if isinstance(command, Remove) and command.count > state.count:
            raise DomainError(f"cannot remove {command.count}: only {state.count} in stock")
        return [ItemsRemoved(count=command.count)] if isinstance(command, Remove) else []

    def conflicts(self, command: InventoryItemCommand, concurrent: Sequence[InventoryItemEvent]) -> str | None:
        removed = sum(e.count for e in concurrent if isinstance(e, ItemsRemoved))
        if isinstance(command, Remove) and removed:
            return f"{removed} item(s) were removed concurrently; check the stock and try again"
        return None


inventory = BoundedContext("inventory", [InventoryItem()])
