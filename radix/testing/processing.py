"""Testing reactions and projections without NATS: their handlers are plain functions of a `Record`.

sent = react(restock, record(ItemsRemoved(count=8), aggregate_id="sku-1", version=3))
assert sent == [Send(CheckIn(count=10), aggregate_id="sku-1")]

view = project(stock, [record(ItemCreated(name="w"), aggregate_id="sku-1"), ...])
assert view == {"sku-1": {"name": "w", "count": 0}}
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from radix.domain import Event, Projection, Reaction, Record, Send
from radix.domain.processing import apply_writes

__all__ = ["project", "react", "record"]

E = TypeVar("E", bound=Event)


def record(
    event: E,
    *,
    aggregate_id: str,
    version: int = 1,
    aggregate_type: str = "",
    context: str = "test",
    namespace: str = "test",
    command_id: str = "",
    correlation_id: str | None = None,
    position: int = 0,
) -> Record[E]:
    """A stored event as a handler is given it (name the aggregate type when the handler looks at it)."""
    return Record(
        namespace,
        context,
        aggregate_type,
        aggregate_id,
        version,
        event,
        command_id or f"command-{version}",
        correlation_id,
        None,
        "1.0",
        position or version,
    )


def react(reaction: Reaction, event: Record[Any]) -> list[Send]:
    """What the reaction sends for one event."""
    return list(reaction.handle(event) or ())


def project(
    projection: Projection, records: Iterable[Record[Any]], view: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The key-value view a projection of `Put`/`Delete`/`Update` writes makes of `records` (starting from
    `view`), as a dict; the same writes a `KVView` applies."""
    model = dict(view or {})
    for each in records:
        apply_writes(model, projection.handle(each) or ())
    return model
