"""Shared fixtures: one real nats-server per test session, a fresh connection per test."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable, Iterator, Mapping

import nats
import pytest
import uvloop
from nats.aio.client import Client as NATS

from radix.transport.server import EmbeddedNats


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Run the tests on uvloop, as nodes do."""
    return {"uvloop": uvloop.new_event_loop}


@pytest.fixture(scope="session")
def nats_server() -> Iterator[EmbeddedNats]:
    """A real nats-server with JetStream on a free loopback port, stopped at the end of the session."""
    with EmbeddedNats() as server:
        yield server


@pytest.fixture
async def nc(nats_server: EmbeddedNats) -> AsyncIterator[NATS]:
    """A connection to the session's nats-server."""
    connection = await nats.connect(nats_server.url, allow_reconnect=False)
    yield connection
    await connection.close()


@pytest.fixture
def namespace() -> str:
    """A namespace of this test's own, so tests sharing a server never see each other's data."""
    return f"t-{secrets.token_hex(4)}"
