"""Connecting to NATS with settings that suit a cluster.

nats-py's defaults give up after 60 reconnect attempts per server, notice a half-open
connection only after minutes, and report dropped messages only to an error callback.
`connect` changes those: unlimited reconnects, a ping every few seconds, and every
connection event logged.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nats
from nats.aio.client import Client as NATS

from radix.errors import ConfigError
from radix.observability.logs import logger

__all__ = ["ConnectOptions", "connect"]


@dataclass(frozen=True, kw_only=True)
class ConnectOptions:
    """How to reach NATS: server URLs and credentials."""

    servers: Sequence[str] = ("nats://127.0.0.1:4222",)
    user: str | None = None
    password: str | None = None
    token: str | None = None
    credentials: Path | None = None
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    ping_interval: int = 5
    connect_timeout: float = 5.0

    def __post_init__(self) -> None:
        if isinstance(self.servers, str):
            object.__setattr__(self, "servers", tuple(s for s in self.servers.split(",") if s))
        if not self.servers:
            raise ConfigError("ConnectOptions.servers", self.servers, "give at least one NATS server URL")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("ConnectOptions.tls_key", self.tls_key, "tls_cert and tls_key go together")

    def tls_context(self) -> ssl.SSLContext | None:
        if self.tls_ca is None and self.tls_cert is None:
            return None
        context = ssl.create_default_context(cafile=str(self.tls_ca) if self.tls_ca else None)
        if self.tls_cert is not None and self.tls_key is not None:
            context.load_cert_chain(str(self.tls_cert), str(self.tls_key))
        return context


async def connect(options: ConnectOptions, *, name: str) -> NATS:
    """A nats-py connection that keeps trying to reconnect and logs what happens to it."""
    log = logger.bind(connection=name)

    async def on_error(error: Exception) -> None:
        log.warning("nats error", error=repr(error))

    async def on_disconnected() -> None:
        if not nc.is_closed:  # nats-py also reports a deliberate close as a disconnection
            log.warning("nats disconnected")

    async def on_reconnected() -> None:
        log.info("nats reconnected", server=str(nc.connected_url.geturl() if nc.connected_url else None))

    async def on_closed() -> None:
        log.debug("nats connection closed")

    nc = await nats.connect(
        servers=list(options.servers),
        name=name,
        user=options.user,
        password=options.password,
        token=options.token,
        user_credentials=str(options.credentials) if options.credentials else None,
        tls=options.tls_context(),
        allow_reconnect=True,
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        ping_interval=options.ping_interval,
        max_outstanding_pings=3,
        connect_timeout=int(options.connect_timeout),
        error_cb=on_error,
        disconnected_cb=on_disconnected,
        reconnected_cb=on_reconnected,
        closed_cb=on_closed,
    )
    return nc
