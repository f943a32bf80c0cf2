"""What every `radix` command shares: finding NATS, connecting, loading a context, printing JSON."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import msgspec
from nats.aio.client import Client as NATS

from radix.domain import BoundedContext
from radix.errors import RadixError
from radix.store.streams import all_streams
from radix.transport.connection import ConnectOptions, connect
from radix.wire.names import namespace_of_nodes_bucket, validate_namespace

__all__ = [
    "DEFAULT_URL",
    "URL_FILE",
    "connected",
    "left",
    "load_context",
    "namespaces",
    "options",
    "plain",
    "print_json",
    "servers",
]

DEFAULT_URL = "nats://127.0.0.1:4222"
#: Where `radix node` notes the URL of the nats-server it embedded, for the other commands to find.
URL_FILE = Path(".radix") / "nats.url"


def import_module(spec: str, option: str) -> ModuleType:
    """The module of `module.path[:attribute]` given to `option`, looked up from the working directory too
    (a module beside where `radix` runs imports, as for `uvicorn app:app`)."""
    module_name = spec.partition(":")[0]
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(module_name)
    except ImportError as e:
        raise RadixError(f"cannot import {module_name!r} for {option} {spec}: {e}") from None


def load_context(spec: str) -> BoundedContext:
    """The bounded context named by `module.path[:attribute]` (the attribute may be left out if there is one),
    looked up from the working directory too."""
    module_name, _, attribute = spec.partition(":")
    module = import_module(spec, "--context")
    if attribute:
        found = getattr(module, attribute, None)
        if not isinstance(found, BoundedContext):
            raise RadixError(f"{spec} is not a BoundedContext (it is {type(found).__name__})")
        return found
    contexts = [v for v in vars(module).values() if isinstance(v, BoundedContext)]
    if len(contexts) != 1:
        raise RadixError(f"{module_name} defines {len(contexts)} BoundedContexts: name one as {module_name}:NAME")
    return contexts[0]


def given_servers(args: argparse.Namespace) -> list[str]:
    """The NATS URLs of --nats, else of $RADIX_NATS; none if neither is set."""
    return [u for u in (args.nats or os.environ.get("RADIX_NATS", "")).split(",") if u]


def servers(args: argparse.Namespace) -> list[str]:
    """--nats, else $RADIX_NATS, else the embedded server a local `radix node` noted, else the default URL."""
    if given := given_servers(args):
        return given
    if URL_FILE.is_file():
        return [URL_FILE.read_text().strip()]
    return [DEFAULT_URL]


def options(args: argparse.Namespace, urls: Sequence[str] | None = None) -> ConnectOptions:
    """How to connect, from the connection arguments. Secrets come from files or the environment
    (`$RADIX_NATS_PASSWORD`, `$RADIX_NATS_TOKEN`), never from the command line, which every process
    listing shows."""
    for flag, instead in (
        ("password", "--password-file FILE or $RADIX_NATS_PASSWORD"),
        ("token", "--token-file FILE or $RADIX_NATS_TOKEN"),
    ):
        if getattr(args, flag, None) is not None:
            raise RadixError(f"--{flag} is not taken: a command line shows in every process listing; use {instead}")
    return ConnectOptions(
        servers=tuple(urls or servers(args)),
        user=args.user,
        password=_secret(args.password_file, "RADIX_NATS_PASSWORD"),
        token=_secret(args.token_file, "RADIX_NATS_TOKEN"),
        nkey_seed=args.nkey,
        credentials=args.creds,
        tls_ca=args.tls_ca,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
    )


def _secret(path: Path | None, variable: str) -> str | None:
    """A secret from a file (its first line), else from the environment, else none."""
    if path is not None:
        try:
            lines = path.read_text().splitlines()
        except OSError as e:
            raise RadixError(f"cannot read {path}: {e.strerror}") from None
        return lines[0] if lines else ""
    return os.environ.get(variable) or None


@contextlib.asynccontextmanager
async def connected(args: argparse.Namespace) -> AsyncIterator[NATS]:
    """A connection for one command, made within the command's `--timeout` (a `NatsConnectionError`
    saying why, if not), and closed after it, quietly: a server gone meanwhile is no error of the command's."""
    nc = await connect(options(args), name="radix cli", wait=args.timeout)
    try:
        yield nc
    finally:
        with contextlib.suppress(Exception):
            await nc.close()


async def namespaces(nc: NATS, given: Sequence[str] | None) -> list[str]:
    """The namespaces given (validated), else every namespace a node ever served on this NATS."""
    if given:
        return [validate_namespace(n) for n in given]
    found = (namespace_of_nodes_bucket(s.config.name or "") for s in await all_streams(nc.jetstream()))
    return sorted(namespace for namespace in found if namespace is not None)


def left(deadline: float) -> float:
    """What is left until a command's deadline (its `--timeout` from its start): a moment at least."""
    return max(deadline - time.monotonic(), 0.1)


def plain(value: Any) -> Any:
    """A msgspec value as plain JSON types (embedded raw JSON included)."""
    return msgspec.json.decode(msgspec.json.encode(value))


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True), flush=True)
