"""Soak: chaos runs with fresh random seeds until the time is up, a folder per run, going on after failures."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from radix.tools.chaos.checker import Result
from radix.tools.chaos.harness import ChaosSpec, run_chaos
from radix.tools.chaos.history import History

__all__ = ["SoakReport", "soak"]

#: What a run proves: invariants that fail when a run is stopped before its faults, and so prove
#: nothing about a run that was cut short on purpose.
PROOF = frozenset({"FaultsInjected", "OwnershipMoved", "MinimumOkOps"})


@dataclass
class SoakReport:
    """What a soak did and found, over all its runs."""

    runs: int = 0
    faults: int = 0
    commands: int = 0
    acknowledged: int = 0
    violations: int = 0
    failed: list[int] = field(default_factory=list)  # seeds of runs with a failing invariant
    inconclusive: list[int] = field(default_factory=list)  # seeds of runs that proved too little
    broken: list[int] = field(default_factory=list)  # seeds of runs the harness could not finish
    cut_short: list[int] = field(default_factory=list)  # seeds of runs stopped on request, too early to prove much
    seconds: float = 0.0

    @property
    def clean(self) -> bool:
        return not (self.failed or self.inconclusive or self.broken)

    def add(self, seed: int, history: History, results: list[Result], *, stopped: bool = False) -> None:
        """Count a run. One `stopped` on request is held to every invariant but those that ask it to
        have proved something (`PROOF`): the faults still to come were skipped."""
        if stopped and any(r.name in PROOF and r.verdict != "pass" for r in results):
            self.cut_short.append(seed)
            results = [r for r in results if r.name not in PROOF]
        self.runs += 1
        self.faults += sum(1 for f in history.faults if f.phase == "start")
        self.commands += len(history.ops)
        self.acknowledged += sum(1 for o in history.ops if o.outcome == "ok")
        self.violations += sum(len(r.violations) or 1 for r in results if r.verdict == "fail")
        if any(r.verdict == "fail" for r in results):
            self.failed.append(seed)
        elif any(r.verdict == "inconclusive" for r in results):
            self.inconclusive.append(seed)

    def line(self) -> str:
        return (
            f"{self.runs} runs, {self.faults} faults injected, {self.commands} commands "
            f"({self.acknowledged} acknowledged), {self.violations} violations; "
            f"failed seeds {self.failed or 'none'}, inconclusive {self.inconclusive or 'none'}, "
            f"broken {self.broken or 'none'}, cut short {self.cut_short or 'none'} ({self.seconds:.0f}s)"
        )


async def soak(
    seconds: float,
    out: Path,
    spec: ChaosSpec,
    *,
    say: Callable[[str], None] = print,
    stop: asyncio.Event | None = None,
) -> SoakReport:
    """Run `spec` with fresh seeds until `seconds` have passed (a run under way finishes); report all of them.

    Each run writes `out/NNNN-seed-S/` (history, results, node logs); `out/soak.json` is
    rewritten after every run, so an interrupted soak still says what it found. Setting
    `stop` ends the soak once the run under way has healed and been checked.
    """
    report = SoakReport()
    began = time.monotonic()
    seeds = random.SystemRandom()
    index = 0
    while time.monotonic() - began < seconds and not (stop is not None and stop.is_set()):
        index += 1
        seed = seeds.randrange(1, 2**31)
        folder = out / f"{index:04d}-seed-{seed}"
        try:
            history, results = await run_chaos(dataclasses.replace(spec, seed=seed), folder, say=say, stop=stop)
        except Exception:
            report.broken.append(seed)
            await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
            await asyncio.to_thread((folder / "error.txt").write_text, traceback.format_exc())
            say(f"run {index} (seed {seed}) broke; see {folder / 'error.txt'}")
        else:
            stopped = stop is not None and stop.is_set()
            report.add(seed, history, results, stopped=stopped)
            failing = [r.name for r in results if r.verdict != "pass" and not (stopped and r.name in PROOF)]
            verdict = f"NOT PASSED: {', '.join(failing)}" if failing else "passed"
            if seed in report.cut_short:
                verdict += " (cut short: stopped before its faults proved much)"
            say(f"run {index} (seed {seed}): {verdict}")
        report.seconds = time.monotonic() - began
        say(f"soak so far: {report.line()}")
        await asyncio.to_thread((out / "soak.json").write_bytes, msgspec.json.encode(report))
    return report
