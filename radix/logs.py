"""Structured logs: structlog, with context bound through contextvars."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

__all__ = ["configure_logging", "logger"]

logger = structlog.get_logger("radix")


def configure_logging(*, json: bool | None = None, level: str = "info") -> None:
    """Log with structlog: JSON lines when not on a terminal (or when `json`), pretty otherwise.

    Context such as namespace, context, aggregate, node and command id is bound
    through contextvars by the runtime and appears on every line.
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
