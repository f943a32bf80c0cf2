"""Helpers for testing code built on Radix: waiting on conditions rather than sleeping."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec
import nats.errors
from nats.aio.client import Client as NATS

from radix._inbox import Inbox
from radix.names import Address, leases_bucket
from radix.store.kv import KVBucket

__all__ = ["NodeProcess", "TcpProxy", "eventually", "lease_owners", "open_inboxes"]


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], *, timeout: float = 10.0, what: str = "the condition"
) -> None:
    """Wait until `condition()` is true (it may be async); raise `TimeoutError` naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    delay = 0.002
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not hold within {timeout}s")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)


async def open_inboxes(nc: NATS) -> None:
    """Open the connection's request inboxes (nats-py's and Radix's): they belong to the connection and
    outlive any node, so a test counting the tasks a node leaves behind opens them first."""
    await nc.jetstream().account_info()
    await Inbox.of(nc).listen()


class NodeProcess:
    """A `radix node` in a child process, for tests of the real thing: started, signalled and stopped by handle.

    Its output goes to `log_path`. `status()` asks the node itself over NATS.
    """

    def __init__(
        self,
        *,
        nats_url: str,
        namespace: str,
        context: str,
        node_id: str,
        log_dir: Path,
        extra: Sequence[str] = (),
        launcher: Sequence[str] = ("-m", "radix"),
    ) -> None:
        self.nats_url = nats_url
        self.namespace = namespace
        self.node_id = node_id
        self.log_path = log_dir / f"{node_id}.log"
        self.args = [
            sys.executable,
            *launcher,
            "node",
            "--nats",
            nats_url,
            "--namespace",
            namespace,
            "--context",
            context,
            "--node-id",
            node_id,
            "--log-json",
            *extra,
        ]
        self.process: subprocess.Popen[bytes] | None = None

    @classmethod
    def several(
        cls,
        count: int,
        *,
        nats_url: str,
        namespace: str,
        context: str,
        log_dir: Path,
        prefix: str,
        extra: Sequence[str] = (),
    ) -> list[NodeProcess]:
        """`count` nodes named `{prefix}1`, `{prefix}2`, ..., not yet started."""
        return [
            cls(
                nats_url=nats_url,
                namespace=namespace,
                context=context,
                node_id=f"{prefix}{i}",
                log_dir=log_dir,
                extra=extra,
            )
            for i in range(1, count + 1)
        ]

    def start(self) -> NodeProcess:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return self

    async def status(self, nc: NATS, timeout: float = 1.0) -> dict[str, Any]:
        """The node's own account of itself (`radix.{ns}._node.{id}.status`)."""
        reply = await nc.request(f"radix.{self.namespace}._node.{self.node_id}.status", b"", timeout=timeout)
        status: dict[str, Any] = msgspec.json.decode(reply.data)
        return status

    async def wait_running(self, nc: NATS, timeout: float = 20.0) -> None:
        """Wait until the node answers status requests as running."""

        async def running() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"node {self.node_id} exited with {self.process.returncode}; the end of {self.log_path}:\n"
                    + self.log_tail()
                )
            try:
                return bool((await self.status(nc, timeout=0.5))["state"] == "running")
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
                return False

        await eventually(running, timeout=timeout, what=f"node {self.node_id} running")

    def log_tail(self, lines: int = 20) -> str:
        """The last `lines` lines of the node's log (where an exit says why)."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def drained(self) -> dict[str, Any] | None:
        """The summary the node logged when it finished draining (handoffs, pauses), if it did."""
        for line in self.log_path.read_text().splitlines():
            if '"event": "drained"' in line:
                summary: dict[str, Any] = msgspec.json.decode(line)
                return summary
        return None

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def stop(self, timeout: float = 20.0) -> int | None:
        """Stop the process: SIGCONT (in case it is paused), SIGTERM, then SIGKILL after `timeout`. Idempotent."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode


async def lease_owners(nc: NATS, addresses: Sequence[Address]) -> dict[str, str]:
    """Which node holds each aggregate's lease (default placement keys), read from the leases bucket.

    Keyed by aggregate id; aggregates live nowhere are left out.
    """
    owners: dict[str, str] = {}
    for address in addresses:
        bucket = KVBucket(nc, leases_bucket(address.namespace))
        entry = await bucket.get(f"{address.context}.{address.aggregate_type}.{address.aggregate_id}")
        if entry.value is not None:
            owners[address.aggregate_id] = str(msgspec.json.decode(entry.value)["node"])
    return owners


class TcpProxy:
    """A TCP proxy on 127.0.0.1 whose link a test can cut: pass, black-hole, delay or reset.

    Point a connection (a node's, or a NATS route) at `url` instead of the server to
    partition it at will. Black-holing drops bytes silently in both directions, as a
    dead network does; `reset()` closes every connection at once. `delay` holds back
    bytes both ways; `upstream_delay` only those from the client to the server (a
    congested uplink: the client hears the server at once, but is heard late).
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.mode = "pass"
        self.delay = 0.0
        self.upstream_delay = 0.0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if self.mode != "pass":
            client_writer.close()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.close()
            return
        self._links.update((client_writer, upstream_writer))
        for source, sink, upstream in ((client_reader, upstream_writer, True), (upstream_reader, client_writer, False)):
            task = asyncio.create_task(self._pump(source, sink, upstream))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, upstream: bool) -> None:
        try:
            while data := await source.read(65536):
                if self.mode == "blackhole":
                    continue  # swallowed: neither side hears of the other
                if delay := self.delay + (self.upstream_delay if upstream else 0.0):
                    await asyncio.sleep(delay)
                if sink.is_closing():  # cut meanwhile (a reset, or the other direction ended): uvloop raises
                    break
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            sink.close()
            self._links.discard(sink)

    def reset(self) -> None:
        """Close every connection through the proxy now."""
        for writer in list(self._links):
            writer.close()
        self._links.clear()

    async def stop(self) -> None:
        """Stop listening and close every connection. Idempotent."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self.reset()
        for task in list(self._tasks):
            task.cancel()
