"""The client on its own: what it says of itself while it connects and closes."""

from __future__ import annotations

import msgspec
import pytest

from radix import Client, ConnectOptions, EmbeddedNats, UnreadableEventError, wire
from radix.client import outcome
from radix.examples.inventory import inventory
from radix.testing import capture_logs


async def test_a_client_opens_and_closes_without_a_word(nats_server: EmbeddedNats) -> None:
    """Connecting and closing are no news: a client logs nothing for them."""
    with capture_logs() as records:
        async with Client(ConnectOptions(servers=[nats_server.url]), inventory, namespace="quiet"):
            pass
    assert [r["event"] for r in records] == []


def test_an_accepted_command_whose_events_this_code_cannot_read_says_it_was_accepted() -> None:
    """A client on older code than the node: the command is applied; the error must not invite sending it again."""
    created = wire.RecordedEvent(
        type="ItemCreated",
        schema="2.0",
        version=1,
        data=msgspec.Raw(b'{"title": "t", "unit": "each"}'),
        command_id="c1",
    )
    reply = wire.Reply(status=wire.ACCEPTED, command_id="c1", version=1, events=[created])
    with pytest.raises(UnreadableEventError, match=r"command c1 was accepted \(version 1\), so do not send it again"):
        outcome(inventory, "InventoryItem", reply)
