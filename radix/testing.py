"""Helpers for testing code built on Radix: waiting on conditions rather than sleeping."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

__all__ = ["eventually"]


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
