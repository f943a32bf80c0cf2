"""What tests read back from a real server: how many commits a context stored, its command log."""

from __future__ import annotations

from nats.aio.client import Client as NATS
from nats.js.errors import NotFoundError

from radix import wire
from radix.testing import eventually
from radix.wire import LogEntry, log_decoder
from radix.wire.names import commands_stream, events_stream


async def commit_count(nc: NATS, namespace: str, context: str = "inventory") -> int:
    """How many commits the context's events stream holds."""
    info = await nc.jetstream().stream_info(events_stream(namespace, context))
    return int(info.state.messages)


async def _stored(nc: NATS, stream: str) -> list[bytes]:
    js = nc.jetstream()
    try:
        last = int((await js.stream_info(stream)).state.last_seq)
    except NotFoundError:
        return []
    bodies = []
    for seq in range(1, last + 1):
        msg = await js.get_msg(stream, seq)
        assert msg.data is not None
        bodies.append(msg.data)
    return bodies


async def command_log(nc: NATS, namespace: str, context: str = "inventory") -> list[LogEntry]:
    """The context's whole command log as docs/protocol.md says to read it: the entries of the log stream
    and those the commits carry (the accepted commands), in the order of their times."""
    logged = [log_decoder.decode(data) for data in await _stored(nc, commands_stream(namespace, context))]
    for data in await _stored(nc, events_stream(namespace, context)):
        logged += wire.entries_in(wire.commit_decoder.decode(data))
    return sorted(logged, key=lambda entry: entry.at)


async def log_entries(nc: NATS, namespace: str, count: int, context: str = "inventory") -> list[LogEntry]:
    """Read the command log once `count` entries are there."""
    entries: list[LogEntry] = []

    async def enough() -> bool:
        nonlocal entries
        entries = await command_log(nc, namespace, context)
        return len(entries) >= count

    await eventually(enough, what=f"{count} command-log entries")
    return entries
