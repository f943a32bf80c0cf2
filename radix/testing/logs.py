"""Capturing what Radix logs, as structured records, to assert on in tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, MutableMapping
from typing import Any

import structlog

from radix.observability.logs import merge_runtime_context

__all__ = ["capture_logs"]


@contextlib.contextmanager
def capture_logs() -> Iterator[list[MutableMapping[str, Any]]]:
    """Every line logged inside the block, as a dict: `event`, `log_level`, the context bound through
    contextvars (`node`, `namespace`, `context`, `aggregate`, `command_id`) and the line's own fields;
    an error logged with its exception carries it as `exc_info`. Assert on these, not on rendered text.

    As structlog's own `capture_logs`, it sees loggers only if `configure_logging` has not cached them
    (it is not called in tests).
    """
    merged = [structlog.contextvars.merge_contextvars, merge_runtime_context]
    with structlog.testing.capture_logs(processors=merged) as records:
        yield records
