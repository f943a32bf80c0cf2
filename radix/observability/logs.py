"""Structured logs: structlog, with context bound through contextvars.

The runtime binds `node`, `namespace`, `context`, `aggregate` and `command_id` where it
learns them (`bound`, `bind`), so every line written beneath carries them without
passing them by hand; a task started there inherits them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Coroutine, Iterator
from typing import Any

import structlog

__all__ = ["bind", "bound", "configure_logging", "logged", "logger"]

logger = structlog.get_logger("radix")


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
