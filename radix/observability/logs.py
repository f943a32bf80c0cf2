"""Structured logs: structlog, with context bound through contextvars.

The runtime binds `node`, `namespace`, `context`, `aggregate` and `command_id` where it
learns them, so every line written beneath carries them without passing them by hand; a
task started there inherits them. Most context goes through structlog's own contextvars
(`bind`, `bound`); the two bound on the hot path, an actor's aggregate (once per task) and
the command of a turn, each take one context variable of their own (`in_actor`,
`on_command`), set in a fraction of a microsecond, and `merge_runtime_context` adds them to
every line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Coroutine, Iterator, MutableMapping
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any

import structlog

__all__ = [
    "bind",
    "bound",
    "configure_logging",
    "in_actor",
    "logged",
    "logger",
    "merge_runtime_context",
    "on_command",
]

logger = structlog.get_logger("radix")

_ACTOR: ContextVar[tuple[str, str, str, str] | None] = ContextVar("radix_actor", default=None)
_COMMAND: ContextVar[tuple[str, int] | None] = ContextVar("radix_command", default=None)
_ACTOR_KEYS = ("node", "namespace", "context", "aggregate")


def in_actor(node: str, namespace: str, context: str, aggregate: str) -> None:
    """Bind an actor's node and aggregate to every line this task (an actor's run) logs from here on."""
    _ACTOR.set((node, namespace, context, aggregate))


class on_command:
    """Bind the command of a turn (`command_id`, the first of the commit's; `batch`, how many it holds) to
    every line logged inside the block. A class, not a generator: it is entered once per turn."""

    __slots__ = ("_token", "_value")

    def __init__(self, command_id: str, batch: int) -> None:
        self._value = (command_id, batch)
        self._token: Token[tuple[str, int] | None] | None = None

    def __enter__(self) -> None:
        self._token = _COMMAND.set(self._value)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._token is not None:
            _COMMAND.reset(self._token)


def merge_runtime_context(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A structlog processor: the actor's and the turn's context, unless the line names them itself."""
    actor = _ACTOR.get()
    if actor is not None:
        for key, value in zip(_ACTOR_KEYS, actor, strict=True):
            event_dict.setdefault(key, value)
    command = _COMMAND.get()
    if command is not None:
        event_dict.setdefault("command_id", command[0])
        event_dict.setdefault("batch", command[1])
    return event_dict


def bind(**values: Any) -> None:
    """Bind `values` to every line logged from here on in this task (and in tasks it starts)."""
    structlog.contextvars.bind_contextvars(**values)


@contextlib.contextmanager
def bound(**values: Any) -> Iterator[None]:
    """Bind `values` to every line logged inside the block (and in tasks started in it)."""
    with structlog.contextvars.bound_contextvars(**values):
        yield


def configure_logging(*, json: bool | None = None, level: str = "info") -> None:
    """Log with structlog: JSON lines when not on a terminal (or when `json`), pretty otherwise.

    Context such as namespace, context, aggregate, node and command id is bound
    through contextvars by the runtime and appears on every line; an error logged
    with its exception carries the traceback.
    """
    as_json = (not sys.stderr.isatty()) if json is None else json
    renderer: Any = structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            merge_runtime_context,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


async def logged(coroutine: Coroutine[Any, Any, None], what: str = "background task failed") -> None:
    """Run a background coroutine; log (never propagate) what it raises, with its traceback, so that one
    failure cannot end the task group it runs in."""
    try:
        await coroutine
    except asyncio.CancelledError:
        raise
    except Exception:
        logger.exception(what)
