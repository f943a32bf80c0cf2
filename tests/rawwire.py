"""Protocol frames sent as they are, over a plain socket: what nats-py would never let through."""

from __future__ import annotations

import asyncio
import contextlib


async def send_raw_frames(url: str, *frames: bytes, timeout: float = 5.0) -> bool:
    """Connect to `url`, send `frames` and a PING; True once the server answers PONG, False if it closed
    the connection instead (a frame it refused)."""
    host, _, port = url.removeprefix("nats://").rpartition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        await reader.readline()  # INFO
        writer.write(b'CONNECT {"verbose":false,"pedantic":false,"headers":true,"no_responders":true}\r\n')
        writer.write(b"".join(frames) + b"PING\r\n")
        await writer.drain()
        while line := await asyncio.wait_for(reader.readline(), timeout):
            if line.startswith(b"PONG"):
                return True
        return False
    except ConnectionError:
        return False
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
