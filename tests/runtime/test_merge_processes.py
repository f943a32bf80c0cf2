"""Merging orders into their customers across three `radix node` processes on one real nats-server, in
two stages, while shoppers keep sending commands, and with a node killed with kill -9 mid-merge."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from nats.aio.client import Client as NATS

from radix import Client, CommandConflictError, CommandRejectedError, EmbeddedNats
from radix.examples.ordering import (
    AddItem,
    AddOrderItem,
    CreateCustomer,
    CreateOrder,
    RemoveCustomer,
    RemoveItem,
    RemoveOrderItem,
    StartOrder,
    ordering,
)
from radix.testing import NodeProcess, eventually
from radix.testing.processes import lease_owners
from radix.wire.names import Address
from tests.cli.running import radix, start_radix
from tests.ordering import assumed_and_retired, customer_orders, retired_orders, stored_command_ids

CODE = "radix.examples.ordering:ordering"
CUSTOMERS, ORDERS = 6, 4


@pytest.fixture
def nodes(nats_server: EmbeddedNats, namespace: str, tmp_path: Path) -> Iterator[dict[str, NodeProcess]]:
    processes = NodeProcess.several(
        3,
        nats_url=nats_server.url,
        namespace=namespace,
        context=CODE,
        log_dir=tmp_path,
        prefix="m",
        extra=["--partitions", "4", "--liveness-ttl", "2", "--rebalance-interval", "3600"],
    )
    started = {process.node_id: process.start() for process in processes}
    yield started
    for process in started.values():
        process.stop()


@dataclass
class Shoppers:
    """One shopper per order adding and removing tea: to the order, and to its customer once the order
    says it has retired. Every command acknowledged is noted."""

    client: Client
    acked: list[str] = field(default_factory=list)
    told_retired: set[str] = field(default_factory=set)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def shop(self, customer: str, order: str) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            command_id = f"{order}-s{n}"
            adding = n % 3 != 0
            try:
                if order in self.told_retired:
                    change = AddOrderItem if adding else RemoveOrderItem
                    await self.client.send(
                        change(order_id=order, item="tea"), aggregate_id=customer, command_id=command_id
                    )
                else:
                    await self.client.send(
                        AddItem(item="tea") if adding else RemoveItem(item="tea"),
                        aggregate_id=order,
                        command_id=command_id,
                    )
            except CommandRejectedError as e:
                reason = e.reply.reason or ""
                if "is retired" in reason:
                    assert f"customer {customer} is responsible for it now" in reason
                    self.told_retired.add(order)
                continue
            except (CommandConflictError, TimeoutError):
                continue
            self.acked.append(command_id)


async def test_orders_merge_into_their_customers_in_two_stages_while_commands_flow(
    nodes: dict[str, NodeProcess], nc: NATS, namespace: str, nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    for process in nodes.values():
        await process.wait_running(nc)
    client = Client(nc, ordering, namespace=namespace)
    orders = {f"o-{c}-{o}": f"c-{c}" for c in range(CUSTOMERS) for o in range(ORDERS)}
    for c in range(CUSTOMERS):
        await client.send(CreateCustomer(name=f"customer {c}"), aggregate_id=f"c-{c}")
    for order, customer in orders.items():
        await client.send(CreateOrder(customer_id=customer), aggregate_id=order)
    shoppers = Shoppers(client)
    shopping = [asyncio.create_task(shoppers.shop(customer, order)) for order, customer in orders.items()]
    await eventually(lambda: len(shoppers.acked) >= 50, timeout=30, what="shoppers under way")
    where = ("--namespace", namespace, "--code", CODE, "--nats", nats_server.url)
    first = await _merge(*where, "--fraction", "0.5", cwd=tmp_path)
    assert 0 < first["moved"] < len(orders)
    assert first["failed"] == first["remaining"] == 0
    # The rest, slowly, with the node holding the most leases killed part way.
    merging = await start_radix("merge", "retire-orders", *where, "--stage", "rest", "--rate", "8", cwd=tmp_path)
    await eventually(
        lambda: _retired_at_least(nc, namespace, first["moved"] + 3), timeout=30, what="the second stage under way"
    )
    addresses = [Address(namespace, "ordering", "Order", o) for o in orders]
    addresses += [Address(namespace, "ordering", "Customer", c) for c in set(orders.values())]
    owners = list((await lease_owners(nc, addresses)).values())
    victim = max(nodes, key=owners.count)
    nodes[victim].signal(signal.SIGKILL)
    assert await asyncio.wait_for(merging.wait(), 120) == 0
    await eventually(lambda: _all_told(shoppers, orders), timeout=60, what="every shopper told its order retired")
    shoppers.stop.set()
    await asyncio.gather(*shopping)

    retired = await retired_orders(nc, namespace)
    assert retired == dict.fromkeys(orders, 1)  # every order moved, and once

    async def assumed() -> bool:
        held = await customer_orders(nc, namespace)
        return sorted(o for c in held.values() for o in c) == sorted(orders)

    await eventually(assumed, timeout=60, what="every customer responsible for its orders")
    stored = await stored_command_ids(nc, namespace)
    assert [c for c in shoppers.acked if c not in stored] == []  # no acknowledged command lost
    assert await _assumed_as_retired(nc, namespace)

    # Afterwards the customer keeps both invariants; the retired order keeps refusing.
    await client.send(RemoveCustomer(), aggregate_id="c-0")
    with pytest.raises(CommandRejectedError, match="an order needs an existing customer"):
        await client.send(StartOrder(order_id="o-new"), aggregate_id="c-0")
    await client.send(StartOrder(order_id="o-new"), aggregate_id="c-1")
    with pytest.raises(CommandRejectedError, match="is placeable already"):
        await client.send(AddOrderItem(order_id="o-new", item="jam"), aggregate_id="c-1")
    with pytest.raises(CommandRejectedError, match="customer c-1 is responsible for it now"):
        await client.send(AddItem(item="jam"), aggregate_id="o-1-0")


async def _merge(*args: str, cwd: Path) -> dict[str, int]:
    code, out, err = await radix("merge", "retire-orders", *args, "--json", cwd=cwd, timeout=120)
    assert code == 0, err
    result: dict[str, int] = json.loads(out)
    return result


async def _retired_at_least(nc: NATS, namespace: str, count: int) -> bool:
    return len(await retired_orders(nc, namespace)) >= count


def _all_told(shoppers: Shoppers, orders: dict[str, str]) -> bool:
    return shoppers.told_retired == set(orders)


async def _assumed_as_retired(nc: NATS, namespace: str) -> bool:
    """Each customer took each order over exactly as the order summarised itself when it retired."""
    pairs = await assumed_and_retired(nc, namespace)
    assert all(assumed == summary for assumed, summary in pairs.values()), pairs
    return True
