"""What tests read back from a real server: how many commits a context stored, its command log."""

from __future__ import annotations

from nats.aio.client import Client as NATS

from radix.testing import eventually
from radix.wire import LogEntry, log_decoder
from radix.wire.names import commands_stream, events_stream


async def commit_count(nc: NATS, namespace: str, context: str = "inventory") -> int:
    """How many commits the context's events stream holds."""
    info = await nc.jetstream().stream_info(events_stream(namespace, context))
    return int(info.state.messages)


async def log_entries(nc: NATS, namespace: str, count: int, context: str = "inventory") -> list[LogEntry]:
    """Read the command log once `count` entries are there."""
    js = nc.jetstream()
    stream = commands_stream(namespace, context)

    async def enough() -> bool:
        return int((await js.stream_info(stream)).state.messages) >= count

    await eventually(enough, what=f"{count} command-log entries")
    entries = []
    for seq in range(1, count + 1):
        msg = await js.get_msg(stream, seq)
        assert msg.data is not None
        entries.append(log_decoder.decode(msg.data))
    return entries
