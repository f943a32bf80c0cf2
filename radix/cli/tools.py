"""`radix demo`, `radix bench` and `radix chaos`: the tools, imported only when one of them runs."""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import sys

from radix.errors import RadixError
from radix.runtime import tune_gc
from radix.tools.bench import as_json, run_bench, table
from radix.tools.catalog import KINDS, SCENARIOS
from radix.tools.chaos.checker import summary as chaos_summary
from radix.tools.chaos.harness import ChaosSpec, run_chaos
from radix.tools.chaos.soak import soak
from radix.tools.demo import run_demo

__all__ = ["bench", "chaos", "demo"]


async def demo(args: argparse.Namespace) -> int:
    return await run_demo(items=args.items, seconds=args.seconds)


async def bench(args: argparse.Namespace) -> int:
    only = tuple(s for s in (args.only or "").split(",") if s)
    unknown = set(only) - set(SCENARIOS)
    if unknown:
        raise RadixError(f"unknown scenario(s) {', '.join(sorted(unknown))}: choose from {', '.join(SCENARIOS)}")
    tune_gc()  # the load generator, as the node and the baseline's responder: both sides pay its costs
    results = await run_bench(
        url=args.nats,
        quick=args.quick,
        runs=args.runs,
        only=only,
        progress=lambda text: print(text, file=sys.stderr, flush=True),
    )
    print(as_json(results) if args.json else table(results), flush=True)
    return 0


async def chaos(args: argparse.Namespace) -> int:
    kinds = tuple(k for k in (args.kinds or "").split(",") if k) or KINDS
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise RadixError(f"unknown fault kind(s) {', '.join(sorted(unknown))}: choose from {', '.join(KINDS)}")
    seed = args.seed if args.seed is not None else random.randrange(1, 2**31)
    spec = ChaosSpec(
        seed=seed,
        kinds=kinds,
        faults=args.faults,
        mutation=args.mutation,
        nodes=args.nodes,
        aim_at_owners=args.aim_at_owners,
    )

    def say(text: str) -> None:
        print(text, flush=True)

    # The first Ctrl-C or SIGTERM skips the faults to come and lets the run heal, check and clean
    # up; a second one cancels.
    stop = asyncio.Event()
    loop, main = asyncio.get_running_loop(), asyncio.current_task()

    def on_signal() -> None:
        if stop.is_set() and main is not None:
            main.cancel()
        stop.set()
        say("stopping after this run has healed and been checked (again to abort)")

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    if args.soak is not None:
        report = await soak(args.soak, args.out, spec, say=say, stop=stop)
        say(f"soak: {report.line()}")
        return 0 if report.clean else 1
    out = args.out / f"seed-{seed}"
    _, results = await run_chaos(spec, out, say=say, stop=stop)
    say(chaos_summary(results))
    passed = all(r.verdict == "pass" for r in results)
    say(f"{'passed' if passed else 'NOT PASSED'}; history and node logs in {out}; replay: radix chaos --seed {seed}")
    return 0 if passed else 1
