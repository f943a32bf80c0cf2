"""Radix's own hot paths over nats-py, on a real server: publishing with encoded headers, and requests
answered on the connection's shared inbox."""

from __future__ import annotations

import asyncio

import msgspec
import nats
import nats.errors
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from radix.domain import EventData
from radix.store import JetStreamEventStore
from radix.transport.inbox import Inbox
from radix.transport.publish import encode_headers, publish
from radix.transport.server import EmbeddedNats
from radix.wire.names import Address


async def test_a_published_message_arrives_as_nats_py_would_send_it(nc: NATS, namespace: str) -> None:
    """Subject, reply, headers and payload arrive intact, whether the headers come as a mapping or a block."""
    sub = await nc.subscribe(f"{namespace}.pub")
    headers = {"Radix-Command-Id": "c-1", "Nats-Expected-Last-Subject-Sequence": "12", "Radix-Issuer": "ana b"}
    await publish(nc, f"{namespace}.pub", b'{"x":1}', reply=f"{namespace}.back", headers=headers)
    await publish(nc, f"{namespace}.pub", b"two", headers=encode_headers({"Radix-Status": "accepted"}))
    await publish(nc, f"{namespace}.pub", b"three")
    first, second, third = [await sub.next_msg(timeout=2) for _ in range(3)]
    assert (first.subject, first.reply, first.data, first.headers) == (
        f"{namespace}.pub",
        f"{namespace}.back",
        b'{"x":1}',
        headers,
    )
    assert (second.data, second.headers) == (b"two", {"Radix-Status": "accepted"})
    assert (third.data, third.headers) == (b"three", None)


def test_a_header_that_would_break_the_frame_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot be sent"):
        encode_headers({"Radix-Issuer": "ana\r\nPUB evil 1"})
    with pytest.raises(ValueError, match="cannot be sent"):
        encode_headers({"Bad Name": "x"})


async def test_publishing_on_a_closed_connection_fails_as_nats_py_does(nats_server: EmbeddedNats) -> None:
    closed = await nats.connect(nats_server.url)
    await closed.close()
    with pytest.raises(nats.errors.ConnectionClosedError):
        await publish(closed, "anything", b"x", headers={"A": "b"})


async def test_a_subject_nats_py_would_refuse_is_refused(nc: NATS) -> None:
    with pytest.raises(nats.errors.BadSubjectError):
        await publish(nc, "two words", b"x")


async def test_requests_share_the_connection_inbox(nc: NATS, namespace: str) -> None:
    """Replies reach their own request among many in flight; no responder and no reply are told apart."""

    async def echo(msg: Msg) -> None:
        await msg.respond(msg.data + (msg.headers or {}).get("N", "").encode())

    await nc.subscribe(f"{namespace}.echo", cb=echo)
    inbox = Inbox.of(nc)
    assert Inbox.of(nc) is inbox
    replies = await asyncio.gather(
        *(inbox.request(f"{namespace}.echo", f"{n}:".encode(), timeout=5, headers={"N": str(n)}) for n in range(200))
    )
    assert [r.data for r in replies] == [f"{n}:{n}".encode() for n in range(200)]
    with pytest.raises(nats.errors.NoRespondersError):
        await inbox.request(f"{namespace}.nobody", b"", timeout=5)
    await nc.subscribe(f"{namespace}.silent")
    with pytest.raises(nats.errors.TimeoutError):
        await inbox.request(f"{namespace}.silent", b"", timeout=0.2)


async def test_reads_started_together_on_a_new_connection_see_each_commit_once(
    nats_server: EmbeddedNats, nc: NATS, namespace: str
) -> None:
    """The inbox subscribes once however many requests start at the same time: a second subscription
    would deliver every reply twice, and a batched read would see each commit twice."""
    address = Address(namespace, "inventory", "InventoryItem", "once")
    data = [EventData("ItemsCheckedIn", "1.0", msgspec.Raw(b'{"count":1}'))]
    async with JetStreamEventStore(nc) as store:
        for version in range(3):
            await store.append(address, data, expected_version=version, command_id=f"c-{version}")
    fresh = await nats.connect(nats_server.url)
    try:
        async with JetStreamEventStore(fresh) as store:
            reads = await asyncio.gather(*(store.read(address) for _ in range(20)))
        assert all([c.version for c in commits] == [1, 2, 3] for commits in reads)
    finally:
        await fresh.close()
