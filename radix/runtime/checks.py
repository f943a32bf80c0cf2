"""What a node checks of its server before it starts: a version with what Radix relies on, JetStream, and
settings that are unsafe for what the node was asked (`unsafe_settings`; `NodeConfig.strict` refuses them)."""

from __future__ import annotations

import asyncio
import time
from typing import Final

import nats.errors
from nats.aio.client import Client as NATS
from nats.js import errors as js_errors

from radix.errors import RadixError
from radix.store.jetstream import StoreConfig

__all__ = ["MIN_SERVER", "check_server", "unsafe_settings"]

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


def unsafe_settings(nc: NATS, store: StoreConfig) -> list[str]:
    """What about the server and the node's store settings could lose acknowledged commands, each said
    with what to do: one replica on a clustered server (a server's loss loses what only it held), and
    events kept in memory (a server's restart loses them)."""
    found: list[str] = []
    info = nc._server_info  # nats-py keeps the server's INFO private
    cluster = info.get("cluster")
    if cluster and store.replicas == 1:
        found.append(
            f"nats-server {info.get('server_name', '?')} is in cluster {cluster!r}, but streams and buckets get one "
            "replica: losing that server loses what only it held; run with --replicas 3 (StoreConfig.replicas)"
        )
    if store.storage == "memory":
        found.append(
            "events are kept in memory (StoreConfig.storage='memory'): a server's restart loses every acknowledged "
            "command; use file storage outside tests"
        )
    return found
