"""What a node checks of its server before it starts: a version with what Radix relies on, JetStream, and
settings that are unsafe for what the node was asked (`unsafe_settings`; `NodeConfig.strict` refuses them):
a server release with a known bug that loses or corrupts acknowledged writes (`KNOWN_BUGS`), one replica on
a cluster, events in memory, and, where the servers' monitoring endpoint is given (`read_varz`), writes
fsynced only now and then on a server that is not in a cluster."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from typing import Any, Final, NamedTuple

import nats.errors
from nats.aio.client import Client as NATS
from nats.js import errors as js_errors

from radix.errors import RadixError
from radix.store.jetstream import StoreConfig

__all__ = ["KNOWN_BUGS", "MIN_SERVER", "KnownBug", "check_server", "known_bugs", "read_varz", "unsafe_settings"]

#: The oldest nats-server Radix runs on: per-key TTLs for liveness, atomic batch publish.
MIN_SERVER: Final = (2, 12)


class KnownBug(NamedTuple):
    """A nats-server bug that can lose or corrupt what Radix stores: the releases from `first` up to (not
    including) `fixed`, what it does, and where it is told."""

    first: tuple[int, int, int]
    fixed: tuple[int, int, int]
    what: str
    source: str


#: Bugs of the releases Radix runs on that lose or corrupt acknowledged writes, or its fences, each fixed in a
#: later patch release (nats-server's pull requests say which).
KNOWN_BUGS: Final = (
    KnownBug((2, 12, 0), (2, 12, 1), "an atomic batch's checks read the commit's subject, not each message's", "#7342"),
    KnownBug((2, 12, 0), (2, 12, 3), "a replicated stream may lose pending writes when sync_interval fires", "#7594"),
    KnownBug((2, 12, 5), (2, 12, 6), "a stream update loses the stream's consumers at the next restart", "#7939"),
    KnownBug((2, 12, 0), (2, 12, 8), "a raft group's commit index can go back, losing committed entries", "#8023"),
    KnownBug((2, 12, 7), (2, 12, 11), "KV keys (one message per subject) may not be found after a restart", "#8254"),
    KnownBug((2, 14, 0), (2, 14, 4), "compacting a stream can purge a message stored meanwhile", "#8400"),
)


def known_bugs(version: tuple[int, int, int]) -> list[KnownBug]:
    """The known bugs of nats-server `version`."""
    return [bug for bug in KNOWN_BUGS if bug.first <= version < bug.fixed]


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


async def read_varz(url: str, timeout: float = 5.0) -> dict[str, Any]:
    """The server's `/varz` from its HTTP monitoring endpoint `url`: the only place that shows JetStream's
    fsync settings (no client API does)."""

    def read() -> dict[str, Any]:
        with urllib.request.urlopen(url.rstrip("/") + "/varz", timeout=timeout) as answer:
            varz: dict[str, Any] = json.loads(answer.read())
            return varz

    try:
        return await asyncio.to_thread(read)
    except (OSError, ValueError) as e:
        raise RadixError(
            f"the server's monitoring endpoint {url} could not be read ({e}): give the URL its `http` setting "
            "serves (http://host:8222), or leave --server-monitor out"
        ) from None


def unsafe_settings(nc: NATS, store: StoreConfig, varz: dict[str, Any] | None = None) -> list[str]:
    """What about the server and the node's store settings could lose acknowledged commands, each said
    with what to do: a server release with a known bug that does, one replica on a clustered server (a
    server's loss loses what only it held), events kept in memory (a server's restart loses them), and,
    given the server's `/varz` (`read_varz`), writes fsynced only every `sync_interval` on a server that
    is not in a cluster (a power loss or an OS crash loses what was not)."""
    found: list[str] = []
    info = nc._server_info  # nats-py keeps the server's INFO private
    version = nc.connected_server_version
    for bug in known_bugs((version.major, version.minor, version.patch)):
        fixed = ".".join(map(str, bug.fixed))
        found.append(
            f"nats-server {version} has a known bug: {bug.what} (nats-io/nats-server {bug.source}); "
            f"upgrade the servers to {fixed} or newer"
        )
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
    config = ((varz or {}).get("jetstream") or {}).get("config") or {}
    if varz is not None and not cluster and not config.get("sync_always", False):
        every = config.get("sync_interval", 120 * 10**9) / 10**9
        found.append(
            f"nats-server {info.get('server_name', '?')} fsyncs JetStream's writes every {every:g}s only "
            "(sync_interval), and is not in a cluster: a power loss or an OS crash loses the commands acknowledged "
            "since; set `jetstream { sync_interval: always }` on the server, or run a cluster with --replicas 3"
        )
    return found
