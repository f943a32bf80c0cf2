"""Reading the ordering example's outcome back from the store, for the merge tests."""

from __future__ import annotations

from typing import Any

import msgspec
from nats.aio.client import Client as NATS
from nats.js import api as js_api

from radix import wire
from radix.wire.names import context_filter, events_stream, parse_stored_subject


async def _events(nc: NATS, namespace: str) -> list[tuple[str, wire.RecordedEvent]]:
    """Every stored event of the ordering context, with its aggregate (`Type/id`), in order."""
    js = nc.jetstream()
    end = int((await js.stream_info(events_stream(namespace, "ordering"))).state.last_seq or 0)
    sub = await js.subscribe(
        context_filter(namespace, "ordering", "evt"),
        ordered_consumer=True,
        config=js_api.ConsumerConfig(deliver_policy=js_api.DeliverPolicy.ALL),
    )
    found: list[tuple[str, wire.RecordedEvent]] = []
    try:
        while True:
            msg = await sub.next_msg(timeout=10)
            parsed = parse_stored_subject(msg.subject)
            assert parsed is not None
            found.extend((parsed[3], e) for e in wire.commit_decoder.decode(msg.data).events)
            if msg.metadata.sequence.stream >= end:
                return found
    finally:
        await sub.unsubscribe()


async def retired_orders(nc: NATS, namespace: str) -> dict[str, int]:
    """How many times each order retired."""
    counts: dict[str, int] = {}
    for aggregate, event in await _events(nc, namespace):
        if event.type == "OrderRetired":
            order = aggregate.partition("/")[2]
            counts[order] = counts.get(order, 0) + 1
    return counts


async def customer_orders(nc: NATS, namespace: str) -> dict[str, dict[str, Any]]:
    """Each customer's orders as its events left them: order id -> items and status."""
    orders: dict[str, dict[str, Any]] = {}
    for aggregate, event in await _events(nc, namespace):
        kind, _, customer = aggregate.partition("/")
        if kind != "Customer":
            continue
        data = msgspec.json.decode(event.data)
        mine = orders.setdefault(customer, {})
        if event.type == "OrderResponsibilityAssumed":
            mine[data["order_id"]] = {"items": data["items"], "status": data["status"]}
        elif event.type == "OrderItemAdded":
            mine[data["order_id"]]["items"].append(data["item"])
        elif event.type == "OrderItemRemoved":
            mine[data["order_id"]]["items"].remove(data["item"])
        elif event.type == "CustomerOrderPlaced":
            mine[data["order_id"]]["status"] = "placed"
        elif event.type == "CustomerOrderAbandoned":
            mine[data["order_id"]]["status"] = "abandoned"
        elif event.type == "CustomerOrderStarted":
            mine[data["order_id"]] = {"items": [], "status": "open"}
    return orders


async def stored_command_ids(nc: NATS, namespace: str) -> set[str]:
    """The command id of every stored event of the ordering context."""
    return {event.command_id for _, event in await _events(nc, namespace)}


async def assumed_and_retired(nc: NATS, namespace: str) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """Per order: what its customer assumed (items, status), and what the order retired with."""
    assumed: dict[str, dict[str, Any]] = {}
    retired: dict[str, dict[str, Any]] = {}
    for aggregate, event in await _events(nc, namespace):
        data = msgspec.json.decode(event.data)
        if event.type == "OrderResponsibilityAssumed":
            assumed[data["order_id"]] = {"items": data["items"], "status": data["status"]}
        elif event.type == "OrderRetired":
            retired[aggregate.partition("/")[2]] = {"items": data["items"], "status": data["status"]}
    return {order: (assumed.get(order, {}), summary) for order, summary in retired.items()}
