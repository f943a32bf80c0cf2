"""The lifecycle every long-running part shares: `start()` and `stop()`, both idempotent, and `async with`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self

__all__ = ["Service"]


class Service(ABC):
    """Started by `start()` (or entering `async with`), stopped by `stop()` (or leaving it)."""

    @abstractmethod
    async def start(self) -> Self:
        """Start, once: a second call returns when the first has."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop, once: a second call returns when the first has."""

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
