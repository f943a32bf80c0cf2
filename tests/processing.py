"""Contexts with reactions and projections, for tests of the read side: a ledger that notes every check-in
of the inventory (through a reaction), and the stock as a KV view and an SQLite table."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from radix import Aggregate, BoundedContext, Command, Event, Put, Record, Send, Update, projection, reaction
from radix.domain import KVView, SQLiteView
from radix.domain.processing import Projection, Write
from radix.examples.inventory import InventoryItem, ItemCreated, ItemsCheckedIn, ItemsRemoved


class LedgerCommand(Command):
    pass


class Note(LedgerCommand):
    source: str
    version: int
    count: int


class LedgerEvent(Event):
    pass


class Noted(LedgerEvent):
    source: str
    version: int
    count: int


class Ledger(Aggregate[int, LedgerCommand, LedgerEvent]):
    """Notes what it is told, in the order it is told."""

    def initial_state(self) -> int:
        return 0

    def evolve(self, state: int, event: LedgerEvent) -> int:
        return state + 1

    def decide(self, state: int, command: LedgerCommand) -> Sequence[LedgerEvent]:
        assert isinstance(command, Note)
        return [Noted(source=command.source, version=command.version, count=command.count)]


ledger = BoundedContext("ledger", [Ledger()])


@reaction("note-check-ins", on=[ItemsCheckedIn])
def note(record: Record[ItemsCheckedIn]) -> list[Send]:
    """Every check-in noted in ledger `all`."""
    command = Note(source=record.aggregate_id, version=record.version, count=record.event.count)
    return [Send(command, aggregate_id="all", context=ledger)]


def stock_writes(record: Record[Any]) -> list[Write]:
    match record.event:
        case ItemCreated(name=name):
            return [Put(record.aggregate_id, {"name": name, "count": 0, "version": record.version})]
        case ItemsCheckedIn(count=count) | ItemsRemoved(count=count):
            moved = count if isinstance(record.event, ItemsCheckedIn) else -count
            version = record.version
            return [Update(record.aggregate_id, lambda row: {**row, "count": row["count"] + moved, "version": version})]
    return []


def stock_into(name: str) -> Projection:
    """The stock per item as a KV view named `name`."""
    return projection(name, into=KVView(), on=[ItemCreated, ItemsCheckedIn, ItemsRemoved])(stock_writes)


def stock_sql(path: Path, name: str = "stock-sql") -> Projection:
    """The stock per item as an SQLite table `stock` (one database file, shared by the nodes)."""
    schema = "CREATE TABLE IF NOT EXISTS stock (item TEXT PRIMARY KEY, name TEXT, count INTEGER NOT NULL)"

    def apply(record: Record[Any], db: sqlite3.Connection) -> None:
        match record.event:
            case ItemCreated(name=name):
                db.execute("INSERT INTO stock (item, name, count) VALUES (?, ?, 0)", (record.aggregate_id, name))
            case ItemsCheckedIn(count=count) | ItemsRemoved(count=count):
                moved = count if isinstance(record.event, ItemsCheckedIn) else -count
                db.execute("UPDATE stock SET count = count + ? WHERE item = ?", (moved, record.aggregate_id))

    return projection(name, into=SQLiteView(path, schema=schema, tables=("stock",)), on=[])(apply)


def inventory_with(*processors: Projection | Any) -> BoundedContext:
    """The inventory example with these reactions and projections."""
    reactions = [p for p in processors if not isinstance(p, Projection)]
    projections = [p for p in processors if isinstance(p, Projection)]
    return BoundedContext("inventory", [InventoryItem()], reactions=reactions, projections=projections)


noted_inventory = inventory_with(note)
"""The inventory whose check-ins are noted in the ledger: `tests.processing:noted_inventory`."""

noted_and_stocked = inventory_with(note, stock_into("stock"))
"""The inventory whose check-ins are noted and whose stock is kept: `tests.processing:noted_and_stocked`."""
