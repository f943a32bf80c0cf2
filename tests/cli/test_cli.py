"""The command line, run as a user runs it (a separate process), against a real nats-server."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import nacl.signing
import nats
import nkeys
import pytest
from nats.aio.client import Client as NATS

from radix import Address, Client, EmbeddedNats, Node, NodeConfig, PlacementConfig
from radix.cli.messages import intersect
from radix.examples.inventory import CheckIn, CreateItem, inventory
from radix.runtime.node import NodeState
from radix.testing import NodeProcess, eventually
from radix.transport.server import ServerTls, free_port
from radix.wire.names import context_filter
from tests.cli.running import radix, start_radix
from tests.transport.certificates import make_certificates


@pytest.fixture
async def two_namespaces(nats_server: EmbeddedNats, namespace: str) -> AsyncIterator[tuple[Node, Node]]:
    """A node in each of two namespaces (the second also hosting the first, so migrations have a target)."""
    async with AsyncExitStack() as stack:
        nodes = []
        for node_id, hosts in (
            ("cli-a", {namespace: [inventory]}),
            ("cli-b", {namespace: [inventory], f"{namespace}-2": [inventory]}),
        ):
            nc = await nats.connect(nats_server.url)
            stack.push_async_callback(nc.close)
            node = Node(
                hosts, nats=nc, config=NodeConfig(node_id=node_id, placement=PlacementConfig(rebalance_batch=0))
            )
            await stack.enter_async_context(node)
            nodes.append(node)
        yield nodes[0], nodes[1]


async def tail_from_start(pattern: str, url: str) -> tuple[int, str, str]:
    """`radix tail PATTERN --from-start --count 1`: the first stored message the pattern matches."""
    return await radix("tail", pattern, "--from-start", "--count", "1", "--nats", url, timeout=30)


async def test_demo_runs_to_a_verified_finish() -> None:
    """`radix demo`: three node processes, a kill -9 and a drain under load, every history verified."""
    code, out, err = await radix("demo", "--items", "12", "--seconds", "3", timeout=120)
    assert code == 0, out + err
    assert "failover: its aggregates accepted commands on other nodes" in out
    assert "drained: exit code 0" in out
    assert "failed             0" in out
    assert "verified           every acknowledged command stored once" in out


async def test_help_lists_every_command() -> None:
    """`radix --help` names every command."""
    code, out, _ = await radix("--help")
    assert code == 0
    for command in ("demo", "node", "send", "tail", "status", "schemas", "migrate", "drain", "bench", "chaos"):
        assert command in out


async def test_permissions_prints_each_roles_grants_as_server_configuration() -> None:
    """`radix permissions` prints what a node, a client and a monitor need (the node's as run under by
    tests/transport/test_node_permissions.py), as nats-server configuration or JSON."""
    code, out, err = await radix("permissions", "--namespace", "shop", "--context", "radix.examples.restock:inventory")
    assert code == 0, err
    assert [line for line in out.splitlines() if line.startswith("#")] == [
        f"# a {role} of namespace 'shop': in its user's entry, e.g. {{ user: ..., permissions: ... }}"
        for role in ("node", "client", "monitor")
    ]
    assert '    "$JS.API.CONSUMER.DURABLE.CREATE.radix_shop_inventory_feed.*"' in out
    code, out, _ = await radix(
        "permissions", "--namespace", "shop", "--context", "radix.examples.inventory", "--role", "node", "--json"
    )
    granted = json.loads(out)["node"]
    assert "radix.shop.inventory.evt.>" in granted["publish"]
    assert not any("_feed" in s for s in granted["publish"])  # no reactions or projections: no feed
    assert "radix.shop.inventory.cmd.> radix.shop.inventory" in granted["subscribe"]


async def test_chaos_refuses_unknown_fault_kinds() -> None:
    """`radix chaos` with a fault kind it does not know says which ones it knows, and starts nothing."""
    code, _, err = await radix("chaos", "--kinds", "kill-node,meteor", "--faults", "1")
    assert code == 1
    assert "unknown fault kind(s) meteor" in err
    assert "pause-node" in err


async def test_send_prints_the_reply(
    two_namespaces: tuple[Node, Node], nats_server: EmbeddedNats, namespace: str
) -> None:
    """`radix send` sends a JSON command with headers and prints the reply; a rejection exits 1."""
    url = ["--nats", nats_server.url]
    code, out, err = await radix(
        "send",
        namespace,
        "inventory",
        "InventoryItem",
        "s-1",
        '{"type": "CreateItem", "name": "w"}',
        "--issuer",
        "ops",
        *url,
    )
    assert code == 0, err
    reply = json.loads(out)
    assert (reply["status"], reply["version"]) == ("accepted", 1)
    assert reply["events"][0]["issuer"] == "ops"
    assert reply["node"] in ("cli-a", "cli-b")  # the node that answered (its Radix-Node header)
    code, out, _ = await radix(
        "send",
        namespace,
        "inventory",
        "InventoryItem",
        "s-1",
        '{"type": "Remove", "count": 1}',
        "--expected-version",
        "1",
        *url,
    )
    assert code == 1
    assert json.loads(out)["reason"] == "cannot remove 1: only 0 in stock"
    code, _, err = await radix("send", namespace, "inventory", "InventoryItem", "s-1", "{not json", *url)
    assert code == 1
    assert "the command is not JSON" in err


async def test_tail_follows_wildcards_across_namespaces(
    two_namespaces: tuple[Node, Node], nats_server: EmbeddedNats, namespace: str, nc: NATS
) -> None:
    """`radix tail 'radix.*.inventory.evt.>'` prints events of both namespaces; --from-start replays history."""
    one, two = Client(nc, inventory, namespace=namespace), Client(nc, inventory, namespace=f"{namespace}-2")
    await one.send(CreateItem(name="first"), aggregate_id="t-1")
    await two.send(CreateItem(name="other"), aggregate_id="t-2")
    replay = await tail_from_start(context_filter(namespace, "inventory", "evt"), nats_server.url)
    assert replay[0] == 0, replay[2]
    assert replay[1].startswith(f'{namespace} inventory InventoryItem/t-1 v1 ItemCreated 1.0 {{"name":"first"}}')
    live = asyncio.create_task(
        radix("tail", "radix.*.inventory.evt.>", "--json", "--count", "4", "--nats", nats_server.url)
    )

    async def sent_to_both() -> bool:
        if live.done():
            return True
        await one.send(CheckIn(count=1), aggregate_id="t-1")
        await two.send(CheckIn(count=1), aggregate_id="t-2")
        return False

    await eventually(sent_to_both, timeout=30, what="tail seeing both namespaces")
    code, out, err = await live
    assert code == 0, err
    items = [json.loads(line) for line in out.splitlines()]
    assert len(items) == 4
    assert {i["namespace"] for i in items} == {namespace, f"{namespace}-2"}
    assert {(i["kind"], i["type"]) for i in items} == {("event", "ItemsCheckedIn")}


async def test_tail_shows_the_command_log(
    two_namespaces: tuple[Node, Node], nats_server: EmbeddedNats, namespace: str, nc: NATS
) -> None:
    """Command-log entries show status, type, command id and node, and a command answered again is marked.
    The accepted command's entry is its commit's; the retry's is on the log stream (replayed each in its order)."""
    client = Client(nc, inventory, namespace=namespace)
    await client.send(CreateItem(name="x"), aggregate_id="t-3", command_id="k-3")
    await client.send(CreateItem(name="x"), aggregate_id="t-3", command_id="k-3")
    code, out, err = await radix(
        "tail", context_filter(namespace, "inventory", "log"), "--from-start", "--count", "2", "--nats", nats_server.url
    )
    assert code == 0, err
    again, first = sorted(out.splitlines(), key=lambda line: "duplicate" not in line)
    assert first.startswith(f"{namespace} inventory InventoryItem/t-3 accepted CreateItem v1 (command k-3, node ")
    assert again.startswith(
        f"{namespace} inventory InventoryItem/t-3 accepted CreateItem v1 (command k-3, duplicate, node "
    )


async def test_tail_finds_streams_past_the_first_page_of_the_listing(
    two_namespaces: tuple[Node, Node], nats_server: EmbeddedNats, namespace: str, nc: NATS
) -> None:
    """The server lists streams 256 at a time, by name: `--from-start` finds a stream on a later page."""
    await Client(nc, inventory, namespace=namespace).send(CreateItem(name="far"), aggregate_id="t-4")
    js = nc.jetstream()
    earlier = [f"radix_0{namespace}_{i:03}" for i in range(257)]  # each sorts before the namespace's streams
    try:
        for name in earlier:
            await js.add_stream(name=name, subjects=[f"{name}.x"], storage="memory")
        code, out, err = await tail_from_start(context_filter(namespace, "inventory", "evt"), nats_server.url)
    finally:
        for name in earlier:
            await js.delete_stream(name)
    assert code == 0, err
    assert f"{namespace} inventory InventoryItem/t-4 v1 ItemCreated" in out


async def test_status_migrate_and_drain(
    two_namespaces: tuple[Node, Node], nats_server: EmbeddedNats, namespace: str, nc: NATS
) -> None:
    """`radix status` lists live nodes; `radix migrate` moves an aggregate; `radix drain` empties and stops a node."""
    a, b = two_namespaces
    client = Client(nc, inventory, namespace=namespace)
    for i in range(6):
        await client.send(CreateItem(name="x"), aggregate_id=f"st-{i}")
    url = ["--nats", nats_server.url]
    code, out, _ = await radix("status", "--namespace", namespace, "--json", *url)
    assert code == 0
    report = json.loads(out)[namespace]
    assert sorted(r["node"] for r in report) == ["cli-a", "cli-b"]
    assert sum(r["live_actors"] for r in report) == 6
    code, out, _ = await radix("status", *url)
    assert f"namespace {namespace}: 2 live node(s)" in out

    owner = a if a.live_actors else b
    other = b if owner is a else a
    moved = next(f"st-{i}" for i in range(6) if owner.is_live(client_address(namespace, f"st-{i}")))
    aggregate = f"{namespace}/inventory/InventoryItem/{moved}"
    code, out, _ = await radix("migrate", aggregate, "--to", owner.node_id, *url)
    assert code == 1
    assert json.loads(out)["reason"] == f"{client_address(namespace, moved)} is on {owner.node_id} already"
    code, out, err = await radix("migrate", f"{namespace}/inventory/InventoryItem/{moved}", "--to", other.node_id, *url)
    assert code == 0, out + err
    answer = json.loads(out)
    assert owner.lease_key(client_address(namespace, moved)) == f"inventory.{answer.pop('shard')}"
    assert answer == {"from": owner.node_id, "ok": True, "to": other.node_id, "ended": "moved"}
    assert (await client.send(CheckIn(count=1), aggregate_id=moved)).version == 2
    assert other.is_live(client_address(namespace, moved))

    code, out, err = await radix("drain", "cli-a", "--namespace", namespace, *url)
    assert code == 0, out + err
    assert "cli-a has handed off its aggregates and left" in out
    assert a.state is NodeState.STOPPED
    for i in range(6):
        assert (await client.send(CheckIn(count=1), aggregate_id=f"st-{i}")).version >= 2
    assert b.live_actors == 6


def client_address(namespace: str, aggregate_id: str) -> Address:
    return Address(namespace, "inventory", "InventoryItem", aggregate_id)


async def test_node_without_nats_embeds_a_server(tmp_path: Path) -> None:
    """`radix node` with no --nats starts an embedded server under .radix/, and `radix send` there finds it."""
    process = await start_radix(
        "node", "--namespace", "local", "--context", "radix.examples.inventory", cwd=tmp_path, stderr=True
    )
    try:
        await eventually(lambda: (tmp_path / ".radix" / "nats.url").is_file(), timeout=30, what="the url file")

        async def accepted() -> bool:
            code, _, _ = await radix(
                "send",
                "local",
                "inventory",
                "InventoryItem",
                "e-1",
                '{"type": "CreateItem", "name": "w"}',
                cwd=tmp_path,
            )
            return code == 0

        await eventually(accepted, timeout=30, what="a command accepted by the embedded node")
        assert (tmp_path / ".radix" / "nats").is_dir()
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0
    assert b"started a nats-server at nats://127.0.0.1:" in err
    assert not (tmp_path / ".radix" / "nats.url").exists()


def test_subject_intersection() -> None:
    """`tail --from-start` narrows a wildcard to each stream's subjects."""
    assert intersect("radix.*.inventory.evt.>", "radix.ns1.inventory.evt.>") == "radix.ns1.inventory.evt.>"
    assert intersect("radix.>", "radix.ns1.inventory.log.>") == "radix.ns1.inventory.log.>"
    assert intersect("radix.*.inventory.evt.>", "radix.ns1.inventory.log.>") is None
    assert intersect("radix.ns1.inventory.evt.Item.a", "radix.ns1.inventory.evt.>") == "radix.ns1.inventory.evt.Item.a"
    assert intersect("radix.*", "radix.ns1.inventory.evt.>") is None


@pytest.mark.parametrize(
    ("credentials", "expected"),
    [
        (["--user", "ann", "--password-file", "wrong.txt"], "refused the authorization of user 'ann'"),
        (["--token-file", "wrong.txt"], "refused the authorization of the token given"),
    ],
)
async def test_refused_credentials_end_a_command_at_once_with_one_line(
    credentials: list[str], expected: str, tmp_path: Path
) -> None:
    """Wrong credentials: `radix status` and `radix send` end at once, non-zero, with one line saying so."""
    (tmp_path / "wrong.txt").write_text("wrong\n")
    auth = {"user": "ann", "password": "secret"} if "--user" in credentials else {"token": "secret"}
    async with EmbeddedNats(**auth) as server:  # type: ignore[arg-type]  # user and password, or a token
        for command in (
            ["status"],
            ["send", "ns", "inventory", "InventoryItem", "x", '{"type": "CheckIn", "count": 1}'],
        ):
            began = time.monotonic()
            code, out, err = await radix(
                *command, "--nats", server.url, *credentials, "--timeout", "3", cwd=tmp_path, timeout=20
            )
            assert time.monotonic() - began < 10  # the interpreter's start included
            assert code == 1
            assert err.strip() == f"radix: NATS at {server.url} {expected}: check the " + (
                "user and password" if "--user" in credentials else "token"
            )
            assert out == ""


async def test_secrets_come_from_files_or_the_environment_never_the_command_line(tmp_path: Path) -> None:
    """A password or token on the command line shows in every process listing: refused, saying where to
    put it; from a file or the environment, it is taken."""
    async with EmbeddedNats(user="ann", password="s3cret") as server:
        code, _, err = await radix("status", "--nats", server.url, "--user", "ann", "--password", "s3cret")
        assert code == 1
        assert "--password is not taken" in err
        assert "--password-file FILE or $RADIX_NATS_PASSWORD" in err
        assert "s3cret" not in err
        (tmp_path / "password").write_text("s3cret\n")
        code, _, err = await radix(
            "status", "--nats", server.url, "--user", "ann", "--password-file", str(tmp_path / "password")
        )
        assert code == 0, err
        code, _, err = await radix(
            "status", "--nats", server.url, "--user", "ann", env={"RADIX_NATS_PASSWORD": "s3cret"}
        )
        assert code == 0, err
    async with EmbeddedNats(token="t0ken") as server:
        code, _, err = await radix("status", "--nats", server.url, env={"RADIX_NATS_TOKEN": "t0ken"})
        assert code == 0, err


async def test_an_unreachable_server_ends_a_command_within_its_timeout() -> None:
    """Nothing listens at the URL: `radix status`, `send` and `schemas` give up within `--timeout`, with one line."""
    url = f"nats://127.0.0.1:{free_port()}"
    for command in (
        ["status"],
        ["send", "ns", "inventory", "InventoryItem", "x", '{"type": "CheckIn", "count": 1}'],
        ["schemas", "scan"],
    ):
        began = time.monotonic()
        code, _, err = await radix(*command, "--nats", url, "--timeout", "2", timeout=20)
        assert time.monotonic() - began < 9
        assert code == 1
        assert len(err.strip().splitlines()) == 1
        assert err.startswith(f"radix: cannot reach NATS at {url} (connection refused) within 2s")


def node_without_server(port: int, log_dir: Path) -> NodeProcess:
    """A `radix node` pointed at a port where no server listens (yet), started."""
    return NodeProcess(
        nats_url=f"nats://127.0.0.1:{port}",
        namespace="patient",
        context="radix.examples.inventory",
        node_id="patient-1",
        log_dir=log_dir,
    ).start()


async def test_a_node_waits_for_its_server_and_says_for_how_long(tmp_path: Path) -> None:
    """`radix node` with its server down keeps trying, saying so once with how long it has tried, then
    serves once the server is up."""
    port = free_port()
    node = node_without_server(port, tmp_path)
    try:

        def waiting() -> list[dict[str, Any]]:
            return [r for r in node.log_records() if r["event"] == "cannot reach nats; trying again"]

        await eventually(lambda: bool(waiting()), timeout=30, what="the node saying it cannot reach NATS")
        assert waiting()[0]["reason"] == "connection refused"
        async with EmbeddedNats(port=port) as server:
            nc = await nats.connect(server.url)
            try:
                await node.wait_running(nc, timeout=30)
            finally:
                await nc.close()
        assert len(waiting()) <= 3  # one line, and a few more as the time grows: not one a second
    finally:
        node.stop()


async def test_a_local_cluster_outlives_each_of_its_nodes(tmp_path: Path) -> None:
    """`radix server` runs the server on its own: every node of a local cluster drains in turn (`radix
    drain`, which ends cleanly), the others take the aggregates on, and the server stays up to the end."""
    server = await start_radix("server", cwd=tmp_path)
    nodes: list[asyncio.subprocess.Process] = []
    try:
        await eventually(lambda: (tmp_path / ".radix" / "nats.url").is_file(), timeout=30, what="the url file")
        url = (tmp_path / ".radix" / "nats.url").read_text().strip()
        for n in range(3):
            nodes.append(
                await start_radix(
                    "node",
                    "--namespace",
                    "local",
                    "--context",
                    "radix.examples.inventory",
                    "--node-id",
                    f"local-{n}",
                    cwd=tmp_path,
                )
            )
        nc = await nats.connect(url)
        client = Client(nc, inventory, namespace="local")
        for i in range(6):
            await client.send(CreateItem(name="x"), aggregate_id=f"l-{i}", timeout=30)
        for n in range(3):
            code, out, err = await radix("drain", f"local-{n}", "--namespace", "local", cwd=tmp_path, timeout=60)
            assert (code, err) == (0, ""), out
            assert f"local-{n} has handed off its aggregates and left" in out
            assert await nodes[n].wait() == 0
            if n < 2:  # the last node drained holds them no more: they wait, stored, for the next node
                for i in range(6):
                    assert (await client.send(CheckIn(count=1), aggregate_id=f"l-{i}", timeout=30)).version == n + 2
        await nc.close()
        assert server.returncode is None  # the server stayed up throughout
        code, out, err = await radix("status", "--namespace", "local", cwd=tmp_path)
        assert (code, err) == (0, "")
        assert "namespace local: 0 live node(s)" in out
    finally:
        for process in (*nodes, server):
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                await asyncio.wait_for(process.wait(), 30)
    assert server.returncode == 0
    assert not (tmp_path / ".radix" / "nats.url").exists()


async def test_a_node_waiting_for_its_server_stops_on_sigterm(tmp_path: Path) -> None:
    """SIGTERM to a node still waiting for NATS stops it at once, cleanly: it holds nothing to hand over."""
    node = node_without_server(free_port(), tmp_path)
    try:
        await eventually(
            lambda: any(r["event"] == "cannot reach nats; trying again" for r in node.log_records()),
            timeout=30,
            what="the node waiting for NATS",
        )
        node.signal(signal.SIGTERM)
        process = node.process
        assert process is not None
        await eventually(lambda: process.poll() is not None, timeout=10, what="the node exiting")
        assert process.returncode == 0
    finally:
        node.stop()


async def test_a_command_connects_with_mutual_tls_and_with_an_nkey(tmp_path: Path) -> None:
    certificates = make_certificates(tmp_path)
    tls = ServerTls(
        cert_file=certificates.server_cert, key_file=certificates.server_key, ca_file=certificates.ca, verify=True
    )
    async with EmbeddedNats(tls=tls) as server:
        mine = ("--tls-ca", str(certificates.ca), "--tls-cert", str(certificates.client_cert))
        code, _, err = await radix("status", "--nats", server.url, *mine, "--tls-key", str(certificates.client_key))
        assert code == 0, err
        code, _, err = await radix("status", "--nats", server.url, "--tls-ca", str(certificates.ca), "--timeout", "3")
        assert code == 1
        assert err.startswith("radix: ")
    seed = nkeys.encode_seed(bytes(nacl.signing.SigningKey.generate()), nkeys.PREFIX_BYTE_USER)
    (tmp_path / "user.nk").write_bytes(seed)
    async with EmbeddedNats(nkey=nkeys.from_seed(bytearray(seed)).public_key.decode()) as server:
        code, _, err = await radix("status", "--nats", server.url, "--nkey", str(tmp_path / "user.nk"))
        assert code == 0, err
