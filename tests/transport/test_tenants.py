"""Tenants as NATS accounts, on a real nats-server: each tenant's namespace lives in an account of its own;
a client of another account can neither send its commands nor read its events, streams or leases; a
monitoring account that imports the tenants' events watches across them with one wildcard."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import nats
import nats.errors
import nats.js.errors
import pytest
from nats.aio.msg import Msg

from radix import Client, ConnectOptions, EmbeddedNats, Node, NodeConfig
from radix.examples.inventory import CreateItem, inventory
from radix.runtime.node import NodeState
from radix.testing import eventually
from radix.wire.names import DRAIN, events_stream, leases_bucket, node_subject

ACCOUNTS = """
accounts {
  TENANT_A: {
    jetstream: enabled
    users: [ { user: "a", password: "a-secret" } ]
    exports: [ { stream: "radix.tenant-a.*.evt.>" } ]
  }
  TENANT_B: {
    jetstream: enabled
    users: [ { user: "b", password: "b-secret" } ]
    exports: [ { stream: "radix.tenant-b.*.evt.>" } ]
  }
  MONITOR: {
    users: [ { user: "monitor", password: "m-secret" } ]
    imports: [
      { stream: { account: TENANT_A, subject: "radix.tenant-a.*.evt.>" } }
      { stream: { account: TENANT_B, subject: "radix.tenant-b.*.evt.>" } }
    ]
  }
}
"""


@pytest.fixture(scope="module")
def server() -> Iterator[EmbeddedNats]:
    with EmbeddedNats(extra_config=ACCOUNTS) as running:
        yield running


async def test_a_tenant_is_alone_in_its_account_and_a_monitor_sees_across(server: EmbeddedNats) -> None:
    a = ConnectOptions(servers=[server.url], user="a", password="a-secret")
    async with Node({"tenant-a": [inventory]}, nats=a, config=NodeConfig(node_id="tenant-a-node")):
        monitor = await nats.connect(server.url, user="monitor", password="m-secret")
        tenant_a = await nats.connect(server.url, user="a", password="a-secret")
        tenant_b = await nats.connect(server.url, user="b", password="b-secret")
        try:
            seen: asyncio.Queue[str] = asyncio.Queue()

            async def watched(msg: Msg) -> None:
                seen.put_nowait(msg.subject)

            await monitor.subscribe("radix.*.inventory.evt.>", cb=watched)
            await monitor.flush()
            result = await Client(tenant_a, inventory, namespace="tenant-a").send(
                CreateItem(name="w"), aggregate_id="w-1"
            )
            assert result.version == 1
            assert await asyncio.wait_for(seen.get(), 5) == "radix.tenant-a.inventory.evt.InventoryItem.w-1"

            # Tenant B sends to tenant A's subjects, and looks for its streams and buckets: nothing is there.
            with pytest.raises(nats.errors.NoRespondersError):
                await tenant_b.request(
                    "radix.tenant-a.inventory.cmd.InventoryItem.w-1", b'{"type": "CheckIn", "count": 1}', timeout=2
                )
            js = tenant_b.jetstream()
            with pytest.raises(nats.js.errors.NotFoundError):
                await js.stream_info(events_stream("tenant-a", "inventory"))
            with pytest.raises(nats.js.errors.NotFoundError):
                await js.stream_info(f"KV_{leases_bucket('tenant-a')}")
            # The monitor cannot send commands into a tenant: it only imports its events.
            with pytest.raises(nats.errors.NoRespondersError):
                await monitor.request(
                    "radix.tenant-a.inventory.cmd.InventoryItem.w-1", b'{"type": "CheckIn", "count": 1}', timeout=2
                )
        finally:
            for connection in (monitor, tenant_a, tenant_b):
                await connection.close()


PERMISSIONS = """
authorization {
  users: [
    { user: "node", password: "n-secret" }
    {
      user: "shop", password: "s-secret"
      permissions: {
        publish: { allow: ["radix.shop.*.cmd.>", "radix.shop.*.get.>"] }
        subscribe: { allow: ["_INBOX.>"] }
      }
    }
  ]
}
"""


async def test_a_client_with_command_rights_only_cannot_drain_a_node_or_reach_jetstream() -> None:
    """The node inbox's control verbs (drain, migrate) are not authenticated by Radix: NATS permissions keep
    them to operators. A client allowed only its namespace's command and read subjects sends commands,
    but its drain request and its JetStream requests never reach anyone, and the node serves on."""
    with EmbeddedNats(extra_config=PERMISSIONS) as server:
        node_options = ConnectOptions(servers=[server.url], user="node", password="n-secret")
        async with Node({"shop": [inventory]}, nats=node_options, config=NodeConfig(node_id="shop-node")) as node:
            refused: list[Exception] = []

            async def on_error(error: Exception) -> None:
                refused.append(error)

            shop = await nats.connect(server.url, user="shop", password="s-secret", error_cb=on_error)
            try:
                client = Client(shop, inventory, namespace="shop")
                assert (await client.send(CreateItem(name="w"), aggregate_id="w-1")).version == 1
                await shop.publish(node_subject("shop", "shop-node", DRAIN), b"")
                with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
                    await shop.request("$JS.API.INFO", b"", timeout=1)
                await eventually(lambda: len(refused) >= 1, what="the server refusing the drain")
                assert "permissions violation" in str(refused[0]).lower()
                assert node.state is NodeState.RUNNING
                assert (await client.send(CreateItem(name="v"), aggregate_id="w-2")).version == 1
            finally:
                await shop.close()
