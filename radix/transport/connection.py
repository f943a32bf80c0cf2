"""Connecting to NATS with settings that suit a cluster, and a first connection that says what fails.

nats-py's defaults give up after 60 reconnect attempts per server, notice a half-open
connection only after minutes, and report dropped messages only to an error callback; and
with reconnects unlimited, its first connection never gives up and never says why. `connect`
changes those: unlimited reconnects once connected, a ping every few seconds, every
connection event logged; and a first connection that ends at once on refused credentials or a
failed TLS handshake (they will not get better), and otherwise keeps trying, with backoff,
until `wait` seconds pass (for good when None, saying so as the time grows).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from nats.aio.client import Client as NATS

from radix.errors import ConfigError, NatsAuthorizationError, NatsTlsError, NatsUnreachableError
from radix.observability.logs import logger

__all__ = ["ConnectOptions", "connect", "shown_url"]

#: The pause between attempts to make the first connection doubles up to this (seconds).
MAX_BACKOFF = 5.0
#: Seconds of trying after which a node that cannot connect says so again (and at each doubling after).
FIRST_REMINDER = 10.0


@dataclass(frozen=True, kw_only=True)
class ConnectOptions:
    """How to reach NATS: server URLs and credentials."""

    servers: Sequence[str] = ("nats://127.0.0.1:4222",)
    user: str | None = None
    password: str | None = None
    token: str | None = None
    nkey_seed: Path | None = None
    """A file holding an NKey seed (`SU...`), for servers that authorise users by NKey."""
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

    def whose(self) -> tuple[str, str]:
        """Whose credentials these are, and what to do when they are refused."""
        if self.credentials is not None:
            return f"the credentials in {self.credentials}", "check the credentials file"
        if self.user is not None:
            return f"user {self.user!r}", "check the user and password"
        if self.token is not None:
            return "the token given", "check the token"
        return "no credentials", "give a user and password, a token or a credentials file"


class _FirstConnection:
    """What the first connection has met so far: when it began, what failed last, what was said."""

    def __init__(self, options: ConnectOptions, wait: float | None, name: str) -> None:
        self.options = options
        self.wait = wait
        self.name = name
        self.began = time.monotonic()
        self.pending = True
        self.discarded = False  # the first connection failed and is being closed: what that meets is no news
        self.reason = ""
        self.attempts = 0
        self._said = ""
        self._next_reminder = FIRST_REMINDER

    async def failed(self, error: Exception, url: str) -> None:
        """One attempt failed: give up at once if it cannot get better; else say so (once per reason, and
        again as the time grows), and pause before the next attempt."""
        if _is_refused_authorization(error):
            whose, advice = self.options.whose()
            raise NatsAuthorizationError(f"NATS at {url} refused the authorization of {whose}: {advice}")
        if isinstance(error, ssl.SSLError):
            raise NatsTlsError(f"TLS with NATS at {url} failed ({error}): check the CA and the certificate")
        self.reason = _reason(error)
        self.attempts += 1
        trying_for = round(time.monotonic() - self.began, 1)
        if self.wait is None and (self.reason != self._said or trying_for >= self._next_reminder):
            logger.warning(
                "cannot reach nats; trying again",
                connection=self.name,
                servers=[shown_url(u) for u in self.options.servers],
                reason=self.reason,
                trying_for=trying_for,
            )
            self._said = self.reason
            while trying_for >= self._next_reminder:
                self._next_reminder *= 2
        # nats-py waits reconnect_time_wait (1 s) between attempts at one server; this pause adds the backoff.
        await asyncio.sleep(min(2 ** min(self.attempts, 4) / 4, MAX_BACKOFF))

    def gave_up(self) -> NatsUnreachableError:
        servers = ", ".join(shown_url(u) for u in self.options.servers)
        reason = f" ({self.reason})" if self.reason else ""
        return NatsUnreachableError(
            f"cannot reach NATS at {servers}{reason} within {self.wait:g}s: start the server, or pass "
            "--nats URL (or set RADIX_NATS)",
            servers=tuple(shown_url(u) for u in self.options.servers),
            reason=self.reason,
        )


def shown_url(url: str) -> str:
    """A server URL fit for logs and errors: any `user:password@` left out."""
    scheme, found, rest = url.partition("://")
    if not found or "@" not in rest.split("/", 1)[0]:
        return url
    return f"{scheme}://{rest.split('@', 1)[1]}"


def _is_refused_authorization(error: Exception) -> bool:
    return "authorization violation" in str(error).lower()


def _reason(error: Exception) -> str:
    """What an attempt to connect met, in a few words."""
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, TimeoutError | asyncio.TimeoutError):
        return "no answer"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    return str(error) or type(error).__name__


async def connect(
    options: ConnectOptions, *, name: str, wait: float | None = None, on_closed: Callable[[], None] | None = None
) -> NATS:
    """A nats-py connection that keeps trying to reconnect once connected, and logs what happens to it.

    The first connection is tried until `wait` seconds pass (for good when None); refused credentials
    (`NatsAuthorizationError`) and a failed TLS handshake (`NatsTlsError`) end it at once, and giving
    up is a `NatsUnreachableError` naming the servers and what the last attempt met. Once connected,
    `on_closed` is called if the connection closes for good (nats-py gives up on some server errors,
    such as a message over `max_payload`), also when it was closed on purpose.
    """
    log = logger.bind(connection=name)
    nc = NATS()
    first = _FirstConnection(options, wait, name)

    async def on_error(error: Exception) -> None:
        if first.discarded:
            return
        if first.pending:
            url = nc._current_server.uri.geturl() if nc._current_server else ", ".join(options.servers)
            url = ", ".join(shown_url(u) for u in url.split(", "))
            await first.failed(error, url)
        else:
            log.warning("nats error", error=repr(error))

    async def on_disconnected() -> None:
        if not nc.is_closed and not first.pending:  # nats-py also reports a deliberate close as a disconnection
            log.warning("nats disconnected")

    async def on_closed_for_good() -> None:
        if on_closed is not None and not first.pending and not first.discarded:
            on_closed()

    async def on_reconnected() -> None:
        log.info("nats reconnected", server=shown_url(nc.connected_url.geturl()) if nc.connected_url else None)

    try:
        async with asyncio.timeout(wait) as limit:
            await nc.connect(
                servers=list(options.servers),
                name=name,
                user=options.user,
                password=options.password,
                token=options.token,
                user_credentials=str(options.credentials) if options.credentials else None,
                nkeys_seed=str(options.nkey_seed) if options.nkey_seed else None,
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
                closed_cb=on_closed_for_good,
            )
    except TimeoutError:
        first.discarded = True
        await _discard(nc)
        if not limit.expired():
            raise
        raise first.gave_up() from None
    except BaseException:
        first.discarded = True
        await _discard(nc)
        raise
    first.pending = False
    if first.attempts:
        log.info("connected to nats", after_seconds=round(time.monotonic() - first.began, 1))
    return nc


async def _discard(nc: NATS) -> None:
    """Close a connection whose first attempt did not succeed (nats-py may hold a socket or tasks). Within
    a second: after a failed TLS handshake, nats-py's close waits for ever on the half-open TLS transport."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(1.0):
            await nc.close()
