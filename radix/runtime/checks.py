"""What a node checks of its server before it starts: a version with what Radix relies on, and JetStream."""

from __future__ import annotations

import asyncio
import time
from typing import Final

import nats.errors
from nats.aio.client import Client as NATS
from nats.js import errors as js_errors

from radix.errors import RadixError

__all__ = ["MIN_SERVER", "check_server"]

#: The oldest nats-server Radix runs on: per-key TTLs for liveness, atomic batch publish.
MIN_SERVER: Final = (2, 12)


async def check_server(nc: NATS, wait: float = 30.0) -> None:
    """Refuse to start on a server that lacks what Radix relies on, saying what to do.

    A JetStream cluster that is still electing its meta leader answers "temporarily
    unavailable": wait for it, up to `wait` seconds.
    """
    version = nc.connected_server_version
    if (version.major, version.minor) < MIN_SERVER:
        raise RadixError(
            f"nats-server {version} is too old: Radix needs {MIN_SERVER[0]}.{MIN_SERVER[1]} or newer "
            "(per-key TTLs for liveness, atomic batch publish); upgrade the servers"
        )
    # The server says in its INFO whether it runs JetStream (nats-py keeps it private).
    if not nc._server_info.get("jetstream", False):
        raise RadixError("JetStream is not available on this NATS: enable it on the servers (-js)")
    deadline = time.monotonic() + wait
    while True:
        try:
            await nc.jetstream().account_info()
            return
        except (js_errors.ServiceUnavailableError, nats.errors.TimeoutError) as e:
            if time.monotonic() > deadline:
                raise RadixError(f"JetStream did not become available within {wait}s ({e!r})") from None
            await asyncio.sleep(0.25)
        except Exception as e:
            raise RadixError(f"JetStream is not usable on this NATS ({e!r}): check the account's limits") from None
