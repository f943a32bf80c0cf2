"""A node's lifecycle on a real nats-server: its states, and start and stop idempotent and safe from any task."""

from __future__ import annotations

import asyncio

from nats.aio.client import Client as NATS

from radix import Client, Node, NodeConfig
from radix.examples.inventory import CreateItem, inventory
from radix.runtime.node import NodeState
from radix.testing import eventually, open_inboxes


async def test_a_node_goes_from_new_to_running_to_stopped(nc: NATS, namespace: str) -> None:
    """Its state says where it is; starting twice at once starts it once; stopping twice is harmless."""
    node = Node({namespace: [inventory]}, nats=nc, config=NodeConfig(node_id="life-1"))
    states = [node.state]
    started = await asyncio.gather(node.start(), node.start())
    assert all(s is node for s in started)
    states.append(node.state)
    assert node.status().state == "running"
    assert (
        await Client(nc, inventory, namespace=namespace).send(CreateItem(name="w"), aggregate_id="l-1")
    ).version == 1
    await asyncio.gather(node.stop(), node.stop())
    states.append(node.state)
    await node.start()  # a stopped node stays stopped
    states.append(node.state)
    assert states == [NodeState.NEW, NodeState.RUNNING, NodeState.STOPPED, NodeState.STOPPED]


async def test_a_node_stopped_before_it_started_never_connects(namespace: str) -> None:
    """Stopping a new node needs no server: it is stopped at once."""
    node = Node({namespace: [inventory]}, nats=NATS())
    await node.stop()
    assert node.state is NodeState.STOPPED
    await node.wait_stopped()


async def test_a_stop_asked_from_one_of_the_nodes_own_tasks_does_not_wait_for_itself(nc: NATS, namespace: str) -> None:
    """From a task of the node's own group, `stop()` asks for the stop and returns; the node then stops."""
    await open_inboxes(nc)
    tasks_before = asyncio.all_tasks()
    node = await Node({namespace: [inventory]}, nats=nc).start()
    returned = asyncio.Event()

    async def stop_from_inside() -> None:
        await node.stop()
        returned.set()

    node._started().actors.spawn(stop_from_inside())
    await asyncio.wait_for(returned.wait(), timeout=5)
    await asyncio.wait_for(node.wait_stopped(), timeout=10)
    assert node.state is NodeState.STOPPED
    await eventually(lambda: asyncio.all_tasks() <= tasks_before, timeout=2, what="no task left")


async def test_a_start_cancelled_midway_leaves_the_node_stopped(nc: NATS, namespace: str) -> None:
    """Whoever started the node went away before it was running: the node does not run on unowned."""
    node = Node({namespace: [inventory]}, nats=nc)
    starting = asyncio.create_task(node.start())
    await eventually(lambda: node.state is NodeState.STARTING, timeout=5, what="the start begun")
    starting.cancel()
    await asyncio.gather(starting, return_exceptions=True)
    await asyncio.wait_for(node.wait_stopped(), timeout=10)
    assert node.state is NodeState.STOPPED
