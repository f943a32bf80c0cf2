"""A TCP proxy whose link a test cuts, slows or resets: partitions between nodes and servers, on 127.0.0.1."""

from __future__ import annotations

import asyncio

__all__ = ["TcpProxy"]


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
