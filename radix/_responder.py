"""The baseline of `radix bench`'s many-aggregates scenario, in a process of its own as a node is.

    python -m radix._responder NATS_URL STREAM PREFIX

A minimal hand-written nats-py responder: for each request on `PREFIX.cmd.>` it makes one
fenced publish (`Nats-Expected-Last-Subject-Sequence`) to `PREFIX.evt.{id}` in `STREAM`, then
replies. It prints `ready` once it listens, and runs until SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys

import nats
import uvloop
from nats.aio.msg import Msg

from radix import wire
from radix.runtime import tune_gc


async def serve(url: str, stream: str, prefix: str) -> None:
    nc = await nats.connect(url, pending_size=64 * 1024 * 1024)
    js = nc.jetstream()
    await js.add_stream(name=stream, subjects=[f"{prefix}.evt.>"], allow_direct=True)
    last: dict[str, int] = {}
    tasks: set[asyncio.Task[None]] = set()

    async def handle(msg: Msg) -> None:
        subject = f"{prefix}.evt.{msg.subject.rpartition('.')[2]}"
        reply = await nc.request(
            subject, msg.data, headers={wire.H_EXPECTED_LAST_SUBJECT_SEQ: str(last.get(subject, 0))}
        )
        last[subject] = json.loads(reply.data)["seq"]
        await nc.publish(msg.reply, b'{"status":"accepted"}')

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
    await nc.close()


if __name__ == "__main__":
    uvloop.run(serve(*sys.argv[1:4]))
