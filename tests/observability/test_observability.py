"""What operators see: NATS micro discovery and stats, Prometheus metrics, structured logs with bound context."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from nats.aio.client import Client as NATS

from radix import Address, Client, CommandRejectedError, MetricsConfig, Node, NodeConfig, wire
from radix.examples.inventory import CheckIn, CreateItem, Remove, inventory
from radix.testing import capture_logs
from radix.wire.names import command_subject, context_filter
from tests.gadgets import gadgets


@pytest.fixture
async def node(nc: NATS, namespace: str) -> AsyncIterator[Node]:
    config = NodeConfig(node_id="obs-1", metrics=MetricsConfig(port=0))
    async with Node({namespace: [inventory]}, nats=nc, config=config) as n:
        yield n


async def exercise(nc: NATS, namespace: str) -> None:
    client = Client(nc, inventory, namespace=namespace)
    await client.send(CreateItem(name="x"), aggregate_id="o-1")
    await client.send(CheckIn(count=2), aggregate_id="o-1")
    with pytest.raises(CommandRejectedError):
        await client.send(Remove(count=9), aggregate_id="o-1")
    await nc.request(command_subject(Address(namespace, "inventory", "InventoryItem", "o-1")), b"nope", timeout=5)


async def test_micro_ping_info_and_stats(node: Node, nc: NATS, namespace: str) -> None:
    """`$SRV.PING/INFO/STATS` answer for a node, with its endpoints and request and error counts."""
    await exercise(nc, namespace)
    ping = json.loads((await nc.request("$SRV.PING.radix.obs-1", b"", timeout=2)).data)
    assert (ping["type"], ping["name"], ping["id"]) == ("io.nats.micro.v1.ping_response", "radix", "obs-1")
    info = json.loads((await nc.request("$SRV.INFO.radix.obs-1", b"", timeout=2)).data)
    assert info["type"] == "io.nats.micro.v1.info_response"
    assert [e["subject"] for e in info["endpoints"]] == [context_filter(namespace, "inventory", "cmd")]
    stats = json.loads((await nc.request("$SRV.STATS.radix.obs-1", b"", timeout=2)).data)
    (endpoint,) = stats["endpoints"]
    assert endpoint["num_requests"] == 4
    assert endpoint["num_errors"] == 1
    assert endpoint["data"] == {"accepted": 2, "rejected": 1, "error": 1}
    assert "malformed command payload" in endpoint["last_error"]
    assert endpoint["processing_time"] > 0


async def test_prometheus_metrics(node: Node, nc: NATS, namespace: str) -> None:
    """The metrics endpoint serves commands by status, a latency histogram, live actors, activations, migrations."""
    await exercise(nc, namespace)
    assert node.metrics_url is not None
    url = node.metrics_url
    text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
    labels = f'context="inventory",namespace="{namespace}",node="obs-1"'
    assert f'radix_commands_total{{{labels},status="accepted"}} 2.0' in text
    assert f'radix_commands_total{{{labels},status="rejected"}} 1.0' in text
    assert f"radix_command_seconds_count{{{labels}}} 3.0" in text
    for le in ("+Inf", "5.0"):  # each timed from its own receipt: all three answered within seconds
        assert (
            f'radix_command_seconds_bucket{{context="inventory",le="{le}",namespace="{namespace}",node="obs-1"}} 3.0'
            in text
        )
    assert 'radix_live_actors{node="obs-1"} 1.0' in text
    assert 'radix_activations_total{node="obs-1"} 1.0' in text
    assert 'radix_migrations_total{node="obs-1"} 0.0' in text


async def test_logs_carry_bound_context(nc: NATS, namespace: str) -> None:
    """Log lines from an actor carry node, namespace, context, aggregate and command id without passing them by
    hand; an error in user code is logged with its exception."""
    with capture_logs() as logs:
        async with Node({namespace: [gadgets]}, nats=nc, config=NodeConfig(node_id="obs-2")):
            reply = await nc.request(
                command_subject(Address(namespace, "gadgets", "Gadget", "g-1")),
                b'{"type": "Explode"}',
                headers={"Radix-Command-Id": "logged-1"},
                timeout=5,
            )
            assert json.loads(reply.data)["status"] == "error"
    (raised,) = [e for e in logs if e["event"] == "decide raised"]
    assert {k: raised[k] for k in ("node", "namespace", "context", "aggregate", "command_id")} == {
        "node": "obs-2",
        "namespace": namespace,
        "context": "gadgets",
        "aggregate": "Gadget/g-1",
        "command_id": "logged-1",
    }
    assert isinstance(raised["exc_info"], ZeroDivisionError)  # logged with its traceback
    assert raised["log_level"] == "error"
    assert [e["node"] for e in logs if e["event"] == "node started"] == ["obs-2"]


def test_wire_timestamps_are_iso_8601_in_utc_to_the_microsecond() -> None:
    """Log entries and node records carry the time as ISO 8601 in UTC, as `datetime.isoformat` writes it."""
    before = datetime.now(UTC)
    stamps = [wire.timestamp() for _ in range(1_000)]
    after = datetime.now(UTC)
    times = [datetime.fromisoformat(s) for s in stamps]
    assert all(s == t.isoformat(timespec="microseconds") for s, t in zip(stamps, times, strict=True))
    assert before - timedelta(microseconds=1) <= times[0] <= times[-1] <= after
    assert times == sorted(times)


async def test_prometheus_shows_each_partition_of_a_projection(nc: NATS, namespace: str) -> None:
    """Lag, handled and parked of each reaction and projection partition the node owns, labelled."""
    from radix.examples import restock
    from radix.runtime.config import ProcessingConfig
    from radix.testing import eventually

    config = NodeConfig(
        node_id="obs-p", metrics=MetricsConfig(port=0), processing=ProcessingConfig(partitions=2, interval=0.2)
    )
    async with Node({namespace: [restock.inventory]}, nats=nc, config=config) as node:
        await Client(nc, inventory, namespace=namespace).send(CreateItem(name="w"), aggregate_id="m-1")
        url = node.metrics_url
        assert url is not None

        async def handled() -> bool:
            text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
            return "radix_processor_handled_total{" in text and 'name="stock"' in text and "} 1.0" in text

        await eventually(handled, timeout=20, what="the projection's event counted")
        text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
        for partition in ("0", "1"):
            labels = (
                f'context="inventory",kind="projection",name="stock",namespace="{namespace}",node="obs-p",'
                f'partition="{partition}"'
            )
            assert f"radix_processor_lag{{{labels}}} 0.0" in text
            assert f"radix_processor_parked{{{labels}}} 0.0" in text
        assert "radix_processor_lag{" in text
