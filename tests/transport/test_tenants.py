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
from radix.wire.names import events_stream, leases_bucket

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
