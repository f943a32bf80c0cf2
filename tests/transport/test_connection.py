"""Connecting: a first connection that gives up in time with a clear reason, or keeps trying and says so."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import nacl.signing
import nkeys
import pytest

from radix import Client, ConnectOptions, EmbeddedNats, Node, NodeConfig
from radix.errors import NatsAuthorizationError, NatsConnectionError, NatsUnreachableError
from radix.examples.inventory import CreateItem, inventory
from radix.testing import capture_logs, eventually
from radix.transport.connection import connect
from radix.transport.server import ServerTls, free_port
from tests.transport.certificates import make_certificates
from tests.transport.jwts import decentralised


async def test_an_unreachable_server_is_given_up_on_within_the_wait() -> None:
    """Nothing listens: the first connection gives up after `wait` seconds, naming the URL and why."""
    url = f"nats://127.0.0.1:{free_port()}"
    began = time.monotonic()
    with pytest.raises(NatsUnreachableError) as unreachable:
        await connect(ConnectOptions(servers=[url]), name="test", wait=1.5)
    assert 1.4 < time.monotonic() - began < 4
    assert unreachable.value.servers == (url,)
    assert str(unreachable.value).startswith(f"cannot reach NATS at {url} (connection refused) within 1.5s")
    assert isinstance(unreachable.value, NatsConnectionError)
    assert isinstance(unreachable.value, ConnectionError)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"user": "ann", "password": "wrong"}, "refused the authorization of user 'ann': check the user and password"),
        ({"token": "wrong"}, "refused the authorization of the token given: check the token"),
        ({}, "refused the authorization of no credentials: give a user and password, a token or a credentials file"),
    ],
)
async def test_refused_credentials_end_the_first_connection_at_once(given: dict[str, str], expected: str) -> None:
    """Credentials the server refuses will not be accepted later: the first connection ends at once,
    saying whose were refused and what to check, even with no limit on waiting."""
    auth = {"user": "ann", "password": "secret"} if "user" in given or not given else {"token": "secret"}
    async with EmbeddedNats(**auth) as server:  # type: ignore[arg-type]  # user and password, or a token
        began = time.monotonic()
        with pytest.raises(NatsAuthorizationError) as refused:
            await connect(ConnectOptions(servers=[server.url], **given), name="test", wait=None)  # type: ignore[arg-type]
        assert time.monotonic() - began < 3
        assert str(refused.value) == f"NATS at {server.url} {expected}"
        good = await connect(ConnectOptions(servers=[server.url], **auth), name="test", wait=5)  # type: ignore[arg-type]
        assert good.is_connected
        await good.close()


async def test_a_node_keeps_trying_and_says_for_how_long() -> None:
    """With no limit, the first connection keeps trying while the server is down, logging once that it cannot
    reach it (and again as the time grows), and connects once the server is up."""
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    with capture_logs() as records:
        connecting = asyncio.create_task(connect(ConnectOptions(servers=[url]), name="patient", wait=None))

        def said(event: str) -> list[dict[str, object]]:
            return [dict(r) for r in records if r["event"] == event]

        await eventually(lambda: bool(said("cannot reach nats; trying again")), timeout=10, what="the first line")
        assert not connecting.done()
        async with EmbeddedNats(port=port):
            nc = await asyncio.wait_for(connecting, timeout=15)
            assert nc.is_connected
            await nc.close()
    (waiting,) = said("cannot reach nats; trying again")
    assert (waiting["servers"], waiting["reason"], waiting["log_level"]) == ([url], "connection refused", "warning")
    assert isinstance(waiting["trying_for"], float)
    (connected,) = said("connected to nats")
    assert isinstance(connected["after_seconds"], float)


async def test_tls_with_the_servers_ca_connects_and_without_it_fails_fast(tmp_path: Path) -> None:
    certificates = make_certificates(tmp_path)
    tls = ServerTls(cert_file=certificates.server_cert, key_file=certificates.server_key)
    async with EmbeddedNats(tls=tls, jetstream=False) as server:
        nc = await connect(ConnectOptions(servers=[server.url], tls_ca=certificates.ca), name="test", wait=5)
        assert nc.is_connected
        await nc.close()
        began = time.monotonic()
        with pytest.raises(NatsConnectionError, match="TLS"):
            await connect(ConnectOptions(servers=[server.url]), name="test", wait=None)
        assert time.monotonic() - began < 5


async def test_mutual_tls_takes_a_client_certificate_signed_by_the_ca_only(tmp_path: Path) -> None:
    certificates = make_certificates(tmp_path)
    tls = ServerTls(
        cert_file=certificates.server_cert, key_file=certificates.server_key, ca_file=certificates.ca, verify=True
    )
    async with EmbeddedNats(tls=tls, jetstream=False) as server:
        mine = ConnectOptions(
            servers=[server.url],
            tls_ca=certificates.ca,
            tls_cert=certificates.client_cert,
            tls_key=certificates.client_key,
        )
        nc = await connect(mine, name="test", wait=5)
        assert nc.is_connected
        await nc.close()
        with pytest.raises(NatsConnectionError):
            await connect(ConnectOptions(servers=[server.url], tls_ca=certificates.ca), name="test", wait=3)


async def test_an_nkey_seed_authenticates_its_user_and_another_is_refused(tmp_path: Path) -> None:
    mine, others = _new_seed(), _new_seed()
    seed, wrong = tmp_path / "user.nk", tmp_path / "other.nk"
    seed.write_bytes(mine)
    wrong.write_bytes(others)
    user = nkeys.from_seed(bytearray(mine))
    async with EmbeddedNats(nkey=user.public_key.decode(), jetstream=False) as server:
        nc = await connect(ConnectOptions(servers=[server.url], nkey_seed=seed), name="test", wait=5)
        assert nc.is_connected
        await nc.close()
        with pytest.raises(NatsAuthorizationError):
            await connect(ConnectOptions(servers=[server.url], nkey_seed=wrong), name="test", wait=None)


def _new_seed() -> bytes:
    """A new user NKey seed (`SU...`)."""
    seed: bytes = nkeys.encode_seed(bytes(nacl.signing.SigningKey.generate()), nkeys.PREFIX_BYTE_USER)
    return seed


async def test_a_credentials_file_authenticates_a_node_and_a_strangers_is_refused(tmp_path: Path) -> None:
    """Decentralised auth: an operator, an account with JetStream and a user's credentials file (JWT and
    seed), as `nsc` makes them. A node connects with the file and serves; a user signed by an account the
    server does not know is refused at once."""
    setup = decentralised(tmp_path)
    async with EmbeddedNats(extra_config=setup.config) as server:
        options = ConnectOptions(servers=[server.url], credentials=setup.credentials)
        async with Node({"creds": [inventory]}, nats=options, config=NodeConfig(node_id="with-creds")) as node:
            client = Client(node.nc, inventory, namespace="creds")
            assert (await client.send(CreateItem(name="w"), aggregate_id="w-1")).version == 1
        began = time.monotonic()
        with pytest.raises(NatsAuthorizationError, match="refused the authorization of the credentials in"):
            await connect(ConnectOptions(servers=[server.url], credentials=setup.stranger), name="test", wait=None)
        assert time.monotonic() - began < 3
