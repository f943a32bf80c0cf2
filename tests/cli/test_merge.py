"""`radix merge` on a real nats-server, run as a user runs it: orders retire into their customers in two
stages; a stage run again changes nothing; a stopped run resumes."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from nats.aio.client import Client as NATS

from radix import Client, CommandRejectedError, EmbeddedNats, Node, NodeConfig
from radix.examples.ordering import AddItem, CreateCustomer, CreateOrder, ordering
from radix.runtime.config import ProcessingConfig
from radix.testing import eventually
from tests.cli.running import radix, start_radix
from tests.ordering import customer_orders, retired_orders

CODE = "radix.examples.ordering:ordering"


async def fill(client: Client, customers: int, orders: int) -> None:
    for c in range(customers):
        await client.send(CreateCustomer(name=f"customer {c}"), aggregate_id=f"c-{c}")
        for o in range(orders):
            order = f"o-{c}-{o}"
            await client.send(CreateOrder(customer_id=f"c-{c}"), aggregate_id=order)
            await client.send(AddItem(item="tea"), aggregate_id=order)


async def test_a_merge_in_two_stages_moves_every_order_into_its_customer_once(
    nc: NATS, namespace: str, nats_server: EmbeddedNats
) -> None:
    config = NodeConfig(node_id="merge-1", processing=ProcessingConfig(partitions=2, interval=0.2))
    async with Node({namespace: [ordering]}, nats=nc, config=config):
        client = Client(nc, ordering, namespace=namespace)
        await fill(client, customers=4, orders=3)
        where = ("--namespace", namespace, "--code", CODE, "--nats", nats_server.url, "--json")
        code, out, err = await radix("merge", "retire-orders", "--fraction", "0.5", *where)
        assert code == 0, err
        first = json.loads(out)
        assert first["stage"] == "fraction-0-5"
        assert 0 < first["moved"] < 12
        assert first["refused"] == first["failed"] == first["remaining"] == 0
        assert "moved" in err
        assert len(await retired_orders(nc, namespace)) == first["moved"]
        code, out, err = await radix("merge", "retire-orders", "--fraction", "0.5", *where)
        assert code == 0, err
        assert json.loads(out)["moved"] == first["moved"]  # done already: nothing new to send
        code, out, err = await radix("merge", "retire-orders", "--stage", "rest", *where)
        assert code == 0, err
        rest = json.loads(out)
        # Those the first stage retired answer their Retire's id with its first outcome: accepted, once.
        assert (rest["moved"], rest["refused"]) == (12, 0)
        retired = await retired_orders(nc, namespace)
        assert sorted(retired) == sorted(f"o-{c}-{o}" for c in range(4) for o in range(3))
        assert all(count == 1 for count in retired.values())

        async def assumed() -> bool:
            orders = await customer_orders(nc, namespace)
            return sum(len(o) for o in orders.values()) == 12

        await eventually(assumed, timeout=30, what="every customer responsible for its orders")
        orders = await customer_orders(nc, namespace)
        assert orders["c-0"]["o-0-0"] == {"items": ["tea"], "status": "open"}
        with pytest.raises(CommandRejectedError, match="customer c-0 is responsible for it now"):
            await client.send(AddItem(item="jam"), aggregate_id="o-0-0")


async def test_a_stopped_merge_resumes_where_it_stopped(
    nc: NATS, namespace: str, nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    config = NodeConfig(node_id="merge-2", processing=ProcessingConfig(partitions=2, interval=0.2))
    async with Node({namespace: [ordering]}, nats=nc, config=config):
        client = Client(nc, ordering, namespace=namespace)
        await fill(client, customers=10, orders=20)
        where = ("--namespace", namespace, "--code", CODE, "--nats", nats_server.url)
        process = await start_radix("merge", "retire-orders", *where, "--rate", "40", cwd=tmp_path, stderr=True)
        assert process.stderr is not None

        async def some_moved() -> bool:
            return len(await retired_orders(nc, namespace)) >= 20

        await eventually(some_moved, timeout=60, what="the merge under way")
        process.send_signal(signal.SIGINT)
        _, err = await process.communicate()
        assert process.returncode == 130, err
        assert b"stopped at position" in err
        stopped_at = len(await retired_orders(nc, namespace))
        assert stopped_at < 200
        code, out, err_text = await radix("merge", "retire-orders", *where, "--json")
        assert code == 0, err_text
        done = json.loads(out)
        assert done["moved"] + done["refused"] == 200
        retired = await retired_orders(nc, namespace)
        assert len(retired) == 200
        assert all(count == 1 for count in retired.values())
