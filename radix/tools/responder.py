"""The baseline of `radix bench`'s many-aggregates scenario, in a process of its own as a node is.

    python -m radix._responder NATS_URL STREAM PREFIX [log]

A minimal hand-written nats-py responder: for each request on `PREFIX.cmd.>` it makes one
fenced publish (`Nats-Expected-Last-Subject-Sequence`) to `PREFIX.evt.{id}` in `STREAM`, then
replies. With `log`, it also publishes a command-log entry per request (a `wire.LogEntry`, as a
node writes, to `PREFIX.log.{id}` in stream `STREAM_LOG`, asking no acknowledgement): the ceiling
for a runtime that logs every command. It prints `ready` once it listens, and runs until SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys

import msgspec
import nats
import uvloop
from nats.aio.msg import Msg

from radix import wire
from radix.runtime import tune_gc


async def serve(url: str, stream: str, prefix: str, log: bool) -> None:
    nc = await nats.connect(url, pending_size=64 * 1024 * 1024)
    js = nc.jetstream()
    await js.add_stream(name=stream, subjects=[f"{prefix}.evt.>"], allow_direct=True)
    if log:
        await js.add_stream(name=f"{stream}_LOG", subjects=[f"{prefix}.log.>"])
    last: dict[str, int] = {}
    tasks: set[asyncio.Task[None]] = set()

    async def handle(msg: Msg) -> None:
        aggregate = msg.subject.rpartition(".")[2]
        subject = f"{prefix}.evt.{aggregate}"
        reply = await nc.request(
            subject, msg.data, headers={wire.H_EXPECTED_LAST_SUBJECT_SEQ: str(last.get(subject, 0))}
        )
        seq = last[subject] = json.loads(reply.data)["seq"]
        await nc.publish(msg.reply, b'{"status":"accepted"}')
        if log:
            entry = wire.LogEntry(
                command_id=str(seq),
                type="CheckIn",
                status=wire.ACCEPTED,
                reason=None,
                issuer=None,
                correlation_id=None,
                expected_version=None,
                version=seq,
                node="responder",
                at=wire.timestamp(),
                aggregate=msg.subject,
            )
            await nc.publish(f"{prefix}.log.{aggregate}", _entries.encode(entry))

    async def on_request(msg: Msg) -> None:
        task = asyncio.create_task(handle(msg))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    await nc.subscribe(f"{prefix}.cmd.>", queue="q", cb=on_request)
    await nc.flush()
    tune_gc()  # as `radix node` does: both sides of the comparison run with the same collector settings
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()
    await js.delete_stream(stream)
    if log:
        await js.delete_stream(f"{stream}_LOG")
    await nc.close()


_entries = msgspec.json.Encoder()

if __name__ == "__main__":
    url, stream, prefix = sys.argv[1:4]
    uvloop.run(serve(url, stream, prefix, log=sys.argv[4:] == ["log"]))
