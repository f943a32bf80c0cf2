"""A recorded workload and a history check: what the demo, the cluster tests and benchmarks drive a cluster with.

Each aggregate gets one sequential sender; every command has its own id, and every
outcome is recorded: `ok` (accepted, with the version told), `fail` (a definite
refusal or error) or `info` (no answer in time: it may or may not have been applied).
`check_histories` then reads every aggregate's stored events and checks what must
hold whatever faults happened: no acknowledged command lost, versions contiguous,
no command applied twice, no event from a command never sent.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from nats.aio.client import Client as NATS

from radix.client import Client
from radix.domain import Command
from radix.errors import CommandTimeoutError, RadixError
from radix.store import JetStreamEventStore
from radix.wire.names import Address

__all__ = ["HistoryError", "Op", "Workload", "check_histories", "quantiles"]


@dataclass
class Op:
    """One command sent, and what came of it."""

    aggregate: str
    command_id: str
    start: float
    end: float = 0.0
    outcome: str = "pending"  # ok, fail or info
    version: int | None = None
    error: str = ""


@dataclass
class Workload:
    """One sequential sender per aggregate, every command recorded."""

    client: Client
    aggregates: Sequence[str]
    command: Callable[[str, int], Command]
    timeout: float = 15.0
    ops: list[Op] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def address(self, aggregate: str) -> Address:
        """Where one of the workload's aggregates lives."""
        client = self.client
        aggregate_type = client.context.aggregate_type_of(type(self.command(aggregate, 1)))
        return Address(client.namespace, client.context.name, aggregate_type, aggregate)

    async def create(self, command: Callable[[str], Command]) -> None:
        """Send every aggregate its creating command, with command id `{aggregate}-create`, all at once."""
        self.created = [f"{a}-create" for a in self.aggregates]
        await asyncio.gather(
            *(
                self.client.send(command(a), aggregate_id=a, command_id=f"{a}-create", timeout=self.timeout)
                for a in self.aggregates
            )
        )

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._drive(a)) for a in self.aggregates]

    async def _drive(self, aggregate: str) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            op = Op(aggregate, f"{aggregate}-c{n}", time.monotonic())
            self.ops.append(op)
            try:
                result = await self.client.send(
                    self.command(aggregate, n), aggregate_id=aggregate, command_id=op.command_id, timeout=self.timeout
                )
                op.outcome, op.version = "ok", result.version
            except CommandTimeoutError as e:
                op.outcome, op.error = "info", str(e)
            except Exception as e:
                op.outcome, op.error = "fail", repr(e)
            op.end = time.monotonic()

    async def stop(self) -> None:
        """Let every sender finish its command in flight, then stop."""
        self._stop.set()
        await asyncio.gather(*self._tasks)

    def count(self, outcome: str) -> int:
        return sum(1 for o in self.ops if o.outcome == outcome)

    def ok_after(self, aggregate: str, moment: float) -> int:
        """Commands to `aggregate` sent after `moment` and accepted."""
        return sum(1 for o in self.ops if o.aggregate == aggregate and o.outcome == "ok" and o.start > moment)

    def recovery(self, aggregate: str, moment: float) -> float:
        """Seconds from `moment` until `aggregate` accepted a command sent after it (one answered just after
        `moment` may have been answered by a node that was dying then)."""
        return (
            min(o.end for o in self.ops if o.aggregate == aggregate and o.outcome == "ok" and o.start > moment) - moment
        )


class HistoryError(RadixError, AssertionError):
    """A stored history breaks what must hold."""


async def check_histories(nc: NATS, workload: Workload) -> dict[str, int]:
    """Check every aggregate's stored history against the recorded workload; return events per aggregate."""
    attempted = {o.command_id for o in workload.ops} | set(workload.created)
    acked: dict[str, dict[str, int | None]] = {}
    for op in workload.ops:
        if op.outcome == "ok":
            acked.setdefault(op.aggregate, {})[op.command_id] = op.version
    counts: dict[str, int] = {}
    async with JetStreamEventStore(nc) as store:
        for aggregate in workload.aggregates:
            events = [e for c in await store.read(workload.address(aggregate)) for e in c.events]
            counts[aggregate] = len(events)
            if [e.version for e in events] != list(range(1, len(events) + 1)):
                raise HistoryError(f"{aggregate}: versions are not contiguous")
            ids = [e.command_id for e in events]
            if len(ids) != len(set(ids)):
                raise HistoryError(f"{aggregate}: a command was applied twice")
            if not set(ids) <= attempted:
                raise HistoryError(f"{aggregate}: events from commands never sent: {set(ids) - attempted}")
            stored = {e.command_id: e.version for e in events}
            for command_id, version in acked.get(aggregate, {}).items():
                if stored.get(command_id) != version:
                    raise HistoryError(f"{aggregate}: acknowledged {command_id} (version {version}) is not stored")
    return counts


def quantiles(values: Sequence[float]) -> tuple[float, float, float]:
    """Median, 99th percentile and maximum."""
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered), p99, ordered[-1]
