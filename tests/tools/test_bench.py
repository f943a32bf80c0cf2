"""`radix bench --quick` runs every scenario to completion (timings are reported, never asserted)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path


async def test_quick_bench_reports_every_scenario() -> None:
    """Every scenario reports Radix's figure, and its baseline and ratio where it has one."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "radix",
        "bench",
        "--quick",
        "--json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    assert process.stdout is not None
    assert process.stderr is not None
    said: list[bytes] = []  # its progress, kept line by line so that a bench that hangs says where

    async def listen(stderr: asyncio.StreamReader) -> None:
        async for line in stderr:
            said.append(line)

    listening = asyncio.create_task(listen(process.stderr))
    try:
        out = await asyncio.wait_for(process.stdout.read(), 300)
        await asyncio.wait_for(process.wait(), 30)
        await listening
    except TimeoutError:
        process.kill()
        await process.wait()
        listening.cancel()
        raise AssertionError("the quick bench did not end within 300 s; it said:\n" + b"".join(said).decode()) from None
    err = b"".join(said)
    assert process.returncode == 0, err.decode()
    results = json.loads(out)
    names = [r["scenario"] for r in results]
    for prefix in (
        "many aggregates",
        "many aggregates, against a responder that also writes a log entry",
        "latency at half the maximum rate, cores shared",
        "hot aggregate",
        "activation, 10 events",
        "a new aggregate's first command, sequential",
        "replay, 1000 one-event commits",
        "activation, 2000 events, no snapshot",
        "activation, 2000 events, snapshot",
        "failover of a node holding",
        "failover of 32 loaded aggregates",
        "the ",
        "bystander latency during the failover",
        "a node process joining a cluster of",
        "planned migration pause",
        "drain of",
        "placement model (10 nodes, 100,000 aggregates, 200 activations/s): KV writes",
        "placement model (10 nodes, 100,000 aggregates, 200 activations/s): a node joining holds its share",
        "placement model (10 nodes, 100,000 aggregates, 200 activations/s): every shard of a node cut off",
        "density at",
        "reaction, event stored to its command stored",
        "projection catch-up",
    ):
        assert any(n.startswith(prefix) for n in names), prefix
    if len(os.sched_getaffinity(0)) > 1:  # a core to spare: the node is measured on one of its own too
        assert any(n.startswith("latency at half the maximum rate, node on a core of its own") for n in names)
    for result in results:
        assert result["radix"] > 0
        assert result["extra"]["host_steal_s"] >= 0
        if result["baseline"] is not None:
            assert result["ratio"] == round(result["ratio"], 2)
            assert result["ratio"] > 0
