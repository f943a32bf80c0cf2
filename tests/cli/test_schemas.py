"""`radix schemas list|check|scan`, `radix tail --context` and `radix node` against a registry, run as a user
runs them, on a namespace where inventory 1.0 and then 2.0 have served (docs/evolving-events.md)."""

from __future__ import annotations

import json

import pytest
from nats.aio.client import Client as NATS

from radix import Client, EmbeddedNats, Node, NodeConfig
from radix.examples import inventory_v2
from radix.examples.inventory import CheckIn, CreateItem, inventory
from radix.wire.names import context_filter
from tests.cli.running import radix

V1, V2 = "radix.examples.inventory:inventory", "radix.examples.inventory_v2:inventory"


@pytest.fixture
async def rolled(nc: NATS, namespace: str) -> str:
    """A, written by 1.0 (created, checked in); B, created by 2.0. Returns the namespace."""
    async with Node({namespace: [inventory]}, nats=nc, config=NodeConfig(node_id="v1-a")):
        client = Client(nc, inventory, namespace=namespace)
        await client.send(CreateItem(name="a"), aggregate_id="A")
        await client.send(CheckIn(count=2), aggregate_id="A")
    async with Node({namespace: [inventory_v2.inventory]}, nats=nc, config=NodeConfig(node_id="v2-a")):
        await Client(nc, inventory_v2.inventory, namespace=namespace).send(
            inventory_v2.CreateItem(title="b"), aggregate_id="B"
        )
    return namespace


async def test_list_shows_each_version_with_who_registered_it(rolled: str, nats_server: EmbeddedNats) -> None:
    code, out, err = await radix("schemas", "list", "--namespace", rolled, "--json", "--nats", nats_server.url)
    assert code == 0, err
    rows = {(r["type"], r["version"]): r for r in json.loads(out)[rolled]}
    assert sorted(rows) == [
        ("ItemCreated", "1.0"),
        ("ItemCreated", "2.0"),
        ("ItemsCheckedIn", "1.0"),
        ("ItemsCheckedIn", "1.1"),
        ("ItemsRemoved", "1.0"),
    ]
    assert (rows[("ItemCreated", "1.0")]["node"], rows[("ItemCreated", "2.0")]["node"]) == ("v1-a", "v2-a")
    assert all(r["at"].startswith("20") and len(r["hash"]) == 16 for r in rows.values())
    code, out, _ = await radix("schemas", "list", "--namespace", rolled, "--nats", nats_server.url)
    assert code == 0
    assert "ItemCreated" in out
    assert "2.0" in out
    assert "by v2-a at 20" in out


async def test_check_says_whether_code_fits_the_registry(rolled: str, nats_server: EmbeddedNats) -> None:
    """0 for code that would start and read every registered version; 1, with each difference, otherwise."""
    url = ("--namespace", rolled, "--nats", nats_server.url)
    code, out, err = await radix("schemas", "check", V2, *url)
    assert (code, out.splitlines()[0]) == (0, f"namespace {rolled}, context inventory: compatible"), out + err
    code, out, _ = await radix("schemas", "check", V1, *url)
    assert code == 1
    assert "NOT compatible" in out
    assert "unreadable: inventory ItemCreated 2.0 is registered (by v2-a at " in out
    assert "deploy code that reads ItemCreated 2.x" in out
    code, out, _ = await radix("schemas", "check", "tests.evolved:with_note", *url, "--json")
    assert code == 1
    report = json.loads(out)
    assert report["compatible"] is False
    (problem,) = report["namespaces"][rolled]["inventory"]["problems"]
    assert "ItemsCheckedIn 1.0 is registered with another shape" in problem
    assert "field 'note' added, with a default" in problem


async def test_scan_reports_which_histories_hold_which_versions(rolled: str, nats_server: EmbeddedNats) -> None:
    url = ("--namespace", rolled, "--nats", nats_server.url)
    code, out, err = await radix("schemas", "scan", *url, "--json")
    assert code == 0, err
    found = json.loads(out)[rolled]["inventory"]
    assert found["messages"] == 3
    assert {(r["type"], r["schema"]): (r["events"], r["examples"]) for r in found["versions"]} == {
        ("ItemCreated", "1.0"): (1, ["InventoryItem/A"]),
        ("ItemCreated", "2.0"): (1, ["InventoryItem/B"]),
        ("ItemsCheckedIn", "1.0"): (1, ["InventoryItem/A"]),
    }
    assert all(r["aggregates"] == 1 for r in found["versions"])
    code, out, _ = await radix("schemas", "scan", *url, "--code", V1, "--json")
    assert code == 1
    unservable = json.loads(out)[rolled]["inventory"]["unservable"]
    assert list(unservable) == ["InventoryItem/B"]
    assert "deploy code that reads ItemCreated 2.x" in unservable["InventoryItem/B"]
    code, out, _ = await radix("schemas", "scan", *url, "--code", V2)
    assert code == 0
    assert f"{V2} could not serve" in out
    assert "0 aggregate(s)" in out


async def test_tail_decodes_through_the_code_given(rolled: str, nats_server: EmbeddedNats) -> None:
    """With --context, each event is also shown as that code reads it: upcast, or why it cannot."""
    events = context_filter(rolled, "inventory", "evt")
    code, out, err = await radix(
        "tail", events, "--from-start", "--count", "3", "--json", "--context", V2, "--nats", nats_server.url
    )
    assert code == 0, err
    first = json.loads(out.splitlines()[0])
    assert (first["type"], first["schema"], first["data"]) == ("ItemCreated", "1.0", {"name": "a"})
    assert (first["read_as"], first["read"]) == ("2.0", {"title": "a", "unit": "each"})
    code, out, err = await radix(
        "tail", events, "--from-start", "--count", "3", "--context", V1, "--nats", nats_server.url
    )
    assert code == 0, err
    (line,) = [line for line in out.splitlines() if "InventoryItem/B" in line]
    assert "ItemCreated 2.0" in line
    assert "UNREADABLE here: ItemCreated 2.0 is stored, but this code reads ItemCreated up to 1.x" in line


async def test_a_node_whose_schemas_disagree_exits_saying_what_to_change(
    rolled: str, nats_server: EmbeddedNats
) -> None:
    code, out, err = await radix(
        "node", "--namespace", rolled, "--context", "tests.evolved:with_note", "--nats", nats_server.url
    )
    assert code == 1, out + err
    assert "Traceback" not in err
    assert f"the event schemas of context 'inventory' disagree with the registry of namespace '{rolled}'" in err
    assert "raise the version to 1.2" in err  # 1.1 is taken: inventory 2.0 registered it
