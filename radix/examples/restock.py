"""The inventory example with a read side (docs/reactions-and-projections.md): a reaction that restocks an
item when a large removal leaves it low, and the stock of every item kept as a KV view."""

from __future__ import annotations

from typing import Any

from radix.domain import BoundedContext, KVView, Put, Record, Send, Update, Write, projection, reaction
from radix.examples.inventory import CheckIn, InventoryItem, ItemCreated, ItemsCheckedIn, ItemsRemoved

#: A removal of at least this many items is answered by a restock.
LARGE = 5


@reaction("restock", on=[ItemsRemoved])
def restock(record: Record[ItemsRemoved]) -> list[Send]:
    """A large removal is followed by a check-in of twice as many."""
    if record.event.count < LARGE:
        return []
    return [Send(CheckIn(count=2 * record.event.count), aggregate_id=record.aggregate_id)]


@projection("stock", on=[ItemCreated, ItemsCheckedIn, ItemsRemoved], into=KVView())
def stock(record: Record[Any]) -> list[Write]:
    """Each item's name and count, by item id."""
    match record.event:
        case ItemCreated(name=name):
            return [Put(record.aggregate_id, {"name": name, "count": 0})]
        case ItemsCheckedIn(count=count):
            return [Update(record.aggregate_id, lambda row: {**row, "count": row["count"] + count})]
        case ItemsRemoved(count=count):
            return [Update(record.aggregate_id, lambda row: {**row, "count": row["count"] - count})]
    return []


inventory = BoundedContext("inventory", [InventoryItem()], reactions=[restock], projections=[stock])
