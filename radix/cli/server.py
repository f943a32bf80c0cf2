"""`radix server`: the nats-server that comes with Radix, on its own, for a local cluster that outlives its nodes."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from radix.cli.common import URL_FILE
from radix.errors import NatsConnectionError, RadixError
from radix.transport.connection import ConnectOptions, connect
from radix.transport.server import EmbeddedNats

__all__ = ["run", "serving_here"]

#: Where `radix server` keeps the server's data, beside the URL file.
DATA_DIR = Path(".radix") / "nats"


async def serving_here() -> str | None:
    """The URL noted in `.radix/nats.url`, if a server answers there; a stale note is removed."""
    if not URL_FILE.is_file():
        return None
    url = URL_FILE.read_text().strip()
    try:
        probe = await connect(ConnectOptions(servers=[url]), name="radix probe", wait=2.0)
    except NatsConnectionError:
        URL_FILE.unlink(missing_ok=True)  # left by a server that is gone (killed, say)
        return None
    await probe.close()
    return url


async def run(args: argparse.Namespace) -> int:
    if (url := await serving_here()) is not None:
        raise RadixError(f"a nats-server already runs for this directory at {url} (noted in {URL_FILE})")
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with EmbeddedNats(store_dir=DATA_DIR.resolve(), port=args.port) as server:
        URL_FILE.write_text(server.url + "\n")
        try:
            print(
                f"radix: nats-server running at {server.url} (data in {DATA_DIR}/; noted in {URL_FILE}); "
                "Ctrl-C or SIGTERM stops it",
                file=sys.stderr,
                flush=True,
            )
            await stop.wait()
        finally:
            URL_FILE.unlink(missing_ok=True)
    print("radix: nats-server stopped", file=sys.stderr, flush=True)
    return 0
