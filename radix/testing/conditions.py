"""Waiting on a condition, with a time-out that names it, rather than sleeping."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from radix.errors import RadixError

__all__ = ["ConditionTimeoutError", "eventually"]


class ConditionTimeoutError(RadixError, TimeoutError):
    """What a test waited for did not come about in time."""


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], *, timeout: float = 10.0, what: str = "the condition"
) -> None:
    """Wait until `condition()` is true (it may be async); else raise `ConditionTimeoutError` (a
    `TimeoutError`) naming `what`."""
    deadline = time.monotonic() + timeout
    delay = 0.002
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise ConditionTimeoutError(f"{what} did not hold within {timeout}s")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)
