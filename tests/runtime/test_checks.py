"""What a node checks of its server at start, against real servers: known-bad releases, and how often a
server fsyncs (read from its monitoring endpoint), warned of, and refused with `strict`."""

from __future__ import annotations

import nats
import pytest

from radix import ConnectOptions, EmbeddedNats, Node, NodeConfig
from radix.errors import RadixError
from radix.examples.inventory import inventory
from radix.runtime.checks import KNOWN_BUGS, known_bugs
from radix.testing import capture_logs
from radix.transport.server import free_port


def test_the_known_bugs_of_a_release_are_those_it_carries() -> None:
    """A release between a bug's first and its fix carries it; the fix's release and those after do not."""
    assert {b.source for b in known_bugs((2, 12, 2))} == {"#7594", "#8023"}
    assert {b.source for b in known_bugs((2, 12, 7))} == {"#8023", "#8254"}
    assert {b.source for b in known_bugs((2, 14, 3))} == {"#8400"}
    assert known_bugs((2, 12, 14)) == known_bugs((2, 14, 4)) == known_bugs((2, 15, 1)) == []
    assert all(b.first < b.fixed for b in KNOWN_BUGS)


async def test_a_release_with_a_known_bug_is_warned_of_and_refused_when_strict(namespace: str) -> None:
    """The node reads the release the server's INFO names. The server here has no known bug: the version
    nats-py took from its INFO is made to name a release that has one, as an older server's INFO would."""
    with EmbeddedNats() as server:
        nc = await nats.connect(server.url)
        try:
            assert nc._current_server is not None
            nc._current_server.server_version = "2.12.5"
            with capture_logs() as logs:
                async with Node({namespace: [inventory]}, nats=nc, config=NodeConfig(node_id="lax")):
                    pass
            reasons = [e["reason"] for e in logs if e["event"] == "unsafe settings"]
            assert any("a stream update loses the stream's consumers" in r and "#7939" in r for r in reasons)
            assert any("upgrade the servers to 2.12.6 or newer" in r for r in reasons)
            strict = Node({namespace: [inventory]}, nats=nc, config=NodeConfig(node_id="strict", strict=True))
            with pytest.raises(RadixError, match=r"refusing to start on unsafe settings \(strict\): .*#7939"):
                await strict.start()
        finally:
            await nc.close()


async def test_lazy_fsync_on_a_lone_server_is_warned_of_and_refused_when_strict(namespace: str) -> None:
    """A lone server that fsyncs every two minutes (its default) loses the commands acknowledged since on a
    power loss: a node given its monitoring URL says so, and refuses to start with `strict`. On a server
    with `sync_interval: always`, it starts."""
    with EmbeddedNats(monitoring=True) as lazy:
        options = ConnectOptions(servers=[lazy.url])
        config = NodeConfig(node_id="lazy", server_monitor=lazy.monitor_url)
        with capture_logs() as logs:
            async with Node({namespace: [inventory]}, nats=options, config=config):
                pass
        reasons = [e["reason"] for e in logs if e["event"] == "unsafe settings"]
        assert len(reasons) == 1
        assert "fsyncs JetStream's writes every 120s only (sync_interval)" in reasons[0]
        assert "sync_interval: always" in reasons[0]
        strict = NodeConfig(node_id="strict", strict=True, server_monitor=lazy.monitor_url)
        with pytest.raises(RadixError, match=r"refusing to start on unsafe settings \(strict\): .*fsyncs"):
            await Node({namespace: [inventory]}, nats=options, config=strict).start()
    with EmbeddedNats(monitoring=True, sync_interval="always") as synced:
        strict = NodeConfig(node_id="strict", strict=True, server_monitor=synced.monitor_url)
        async with Node({namespace: [inventory]}, nats=ConnectOptions(servers=[synced.url]), config=strict) as node:
            assert node.status().state == "running"


async def test_a_monitoring_url_that_cannot_be_read_stops_the_start_saying_so(namespace: str) -> None:
    """A wrong --server-monitor is a mistake to fix, not a check to skip."""
    with EmbeddedNats() as server:
        nowhere = f"http://127.0.0.1:{free_port()}"
        config = NodeConfig(node_id="wrong", server_monitor=nowhere)
        with pytest.raises(RadixError, match=f"monitoring endpoint {nowhere} could not be read"):
            await Node({namespace: [inventory]}, nats=ConnectOptions(servers=[server.url]), config=config).start()
