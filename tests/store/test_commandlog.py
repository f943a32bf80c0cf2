"""The command log on a real nats-server: entries go out in bursts, each acknowledged by its last entry."""

from __future__ import annotations

import asyncio

from nats.aio.client import Client as NATS

from radix import Address, wire
from radix.store.commandlog import CommandLog
from radix.wire import LogEntry
from radix.wire.names import log_subject
from tests.reading import log_entries


def entry(command_id: str, reason: str | None = None) -> LogEntry:
    return LogEntry(command_id, "CheckIn", "accepted", reason, None, None, None, 1, "n", wire.timestamp())


async def test_the_command_log_writes_every_entry_of_a_burst_and_counts_what_fails(nc: NATS, namespace: str) -> None:
    """Entries recorded in one turn of the loop go out as one burst per stream, acknowledged by its last
    entry: every one is stored in order, and a refused burst or an oversized entry is counted as failed."""
    log = CommandLog(nc, max_age=3600, replicas=1)
    await log.ensure_stream(namespace, "inventory")
    subject = log_subject(Address(namespace, "inventory", "InventoryItem", "b-1"))
    async with asyncio.TaskGroup() as group:
        await log.start(group)
        for n in range(50):
            log.record(subject, entry(f"c-{n}"))
        assert await log.flush(5)
        assert (log.written, log.failed) == (50, 0)
        assert [e.command_id for e in await log_entries(nc, namespace, 50)] == [f"c-{n}" for n in range(50)]
        # No stream takes this context's log: the burst's acknowledgement says so.
        for n in range(3):
            log.record(log_subject(Address(namespace, "nowhere", "T", "x")), entry(f"d-{n}"))
        log.record(subject, entry("big", reason="x" * nc.max_payload))
        assert await log.flush(5)
        assert (log.written, log.failed) == (50, 4)
