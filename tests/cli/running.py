"""Running `radix` as a user does: a separate process, with this checkout importable."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

__all__ = ["ENV", "radix", "start_radix"]

ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}


async def start_radix(*args: str, cwd: Path, stderr: bool = False) -> asyncio.subprocess.Process:
    """`radix ARGS` left running (stopped by the test, by its handle); its stderr piped if asked for."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "radix",
        *args,
        cwd=cwd,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE if stderr else asyncio.subprocess.DEVNULL,
        env=ENV,
    )


async def radix(
    *args: str, cwd: Path | None = None, timeout: float = 60, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """Run `radix ARGS` without blocking the event loop (nodes in this process keep serving); `env` adds to
    the environment."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "radix",
        *args,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**ENV, **(env or {})},
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    finally:
        if process.returncode is None:  # timed out, or the test was cancelled: stop it by its own handle
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()
