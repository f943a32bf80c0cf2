"""The client on its own: what it says of itself while it connects and closes."""

from __future__ import annotations

from radix import Client, ConnectOptions, EmbeddedNats
from radix.examples.inventory import inventory
from radix.testing import capture_logs


async def test_a_client_opens_and_closes_without_a_word(nats_server: EmbeddedNats) -> None:
    """Connecting and closing are no news: a client logs nothing for them."""
    with capture_logs() as records:
        async with Client(ConnectOptions(servers=[nats_server.url]), inventory, namespace="quiet"):
            pass
    assert [r["event"] for r in records] == []
