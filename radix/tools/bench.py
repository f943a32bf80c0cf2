"""`radix bench`: Radix against the physical ceiling, side by side in one run.

Every scenario runs its baseline in the same run, on the same server, so the ratio
holds even on a noisy machine. Figures are medians over `--runs` repetitions.

- many aggregates: 1,000 aggregates, 256 commands in flight, end to end through the wire.
  Baseline: a minimal nats-py responder doing one fenced publish per request, then replying;
  and beside it, the same responder writing a command-log entry per request too, as Radix does.
  Then the latency at half the rate reached (an open loop), with cores shared, and with the
  node (and the responder) on a core of its own where the machine has one to spare.
- hot aggregate: every command to one aggregate, as many in flight as in many aggregates (256).
  Baseline: sequential fenced appends to one subject.
- activation: activating a 10-event aggregate (p50, p99), and a long aggregate with and
  without a snapshot. Baseline: one batched direct get of the same events.
- failover and migration: node processes; kill -9 of a node holding 20,000 aggregates under load:
  each one's time to a command accepted elsewhere (baseline: the liveness TTL, which a failover
  without evidence would wait out), and the latency of the survivors' aggregates meanwhile;
  the pause per aggregate in a drain.
- density: memory per idle live actor.

The node runs as `radix node` and the baseline's responder as `radix._responder`, each in a
process of its own; this process is the load generator for both. The throughput scenarios
also report the CPU each process spent per command.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from radix import wire
from radix.client import Client
from radix.domain import EventData
from radix.errors import RadixError
from radix.examples.inventory import CheckIn, CreateItem, inventory
from radix.runtime import ActorConfig, Node, NodeConfig, PlacementConfig
from radix.store import JetStreamEventStore
from radix.store.placement import shard_table
from radix.testing import NodeProcess, eventually
from radix.tools import placesim, readbench
from radix.tools.catalog import SCENARIOS
from radix.tools.workload import Workload, quantiles
from radix.transport.server import EmbeddedNats
from radix.wire.names import Address, direct_get, event_subject, events_stream, shard_of

__all__ = ["Result", "run_bench"]


@dataclass
class Result:
    """One scenario's figures: Radix's, the baseline's, and their ratio (higher is better for Radix)."""

    scenario: str
    unit: str
    radix: float
    baseline: float | None
    ratio: float | None
    target: str
    p50_ms: float | None = None
    p99_ms: float | None = None
    extra: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Sizes:
    aggregates: int
    commands: int
    in_flight: int
    hot_commands: int
    activations: int
    long_history: int
    density_actors: int
    failover_actors: int
    model_nodes: int
    model_aggregates: int
    model_rate: float
    runs: int

    @classmethod
    def pick(cls, quick: bool, runs: int | None) -> Sizes:
        if quick:
            return cls(200, 2_000, 64, 500, 50, 2_000, 2_000, 500, 10, 100_000, 200.0, runs or 1)
        return cls(1_000, 20_000, 256, 20_000, 500, 100_000, 100_000, 20_000, 100, 1_000_000, 1_000.0, runs or 3)


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _median_quantiles(runs: list[list[float]]) -> tuple[float, float]:
    """The median over runs of each run's p50, and of each run's p99."""
    per_run = [quantiles(run) for run in runs]
    return _median([q[0] for q in per_run]), _median([q[1] for q in per_run])


def _latency_result(
    name: str,
    radix: list[list[float]],
    base: list[list[float]],
    *,
    at: str,
    target: str,
    extra: dict[str, float] | None = None,
) -> Result:
    """A latency scenario: Radix's p50 and p99 beside the baseline's, compared at `at` ("p50" or "p99");
    the ratio is the baseline's over Radix's (lower is better for a latency). `radix` and `base` hold
    the latencies of each run: each quantile is taken per run, and the median of the runs' is given,
    as for the rates (one run that a host's hiccup hit does not decide the figure)."""
    p50, p99 = _median_quantiles(radix)
    b50, b99 = _median_quantiles(base)
    mine, theirs, other = (p50, b50, ("baseline_p99_ms", b99)) if at == "p50" else (p99, b99, ("baseline_p50_ms", b50))
    return Result(
        name,
        f"ms {at}",
        round(mine * 1000, 3),
        round(theirs * 1000, 3),
        round(theirs / mine, 2),
        target,
        round(p50 * 1000, 3),
        round(p99 * 1000, 3),
        {other[0]: round(other[1] * 1000, 3), **(extra or {})},
    )


class _Bench:
    def __init__(self, url: str, sizes: Sizes, progress: Callable[[str], None], server_pid: int | None = None) -> None:
        self.url = url
        self.sizes = sizes
        self.say = progress
        self.run_id = 0
        self.server_pid = server_pid

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[NATS]:
        nc = await nats.connect(self.url, pending_size=64 * 1024 * 1024)
        try:
            yield nc
        finally:
            await nc.close()

    def namespace(self, name: str) -> str:
        self.run_id += 1
        return f"bench-{name}-{os.getpid()}-{self.run_id}"

    @contextlib.asynccontextmanager
    async def node_process(self, name: str, *extra: str) -> AsyncIterator[tuple[NodeProcess, NATS]]:
        """A `radix node` serving the inventory example in a process of its own, as in production, and a
        connection from this process to send it commands; the node is stopped on leaving."""
        with tempfile.TemporaryDirectory(prefix="radix-bench-") as workdir:
            node = NodeProcess(
                nats_url=self.url,
                namespace=self.namespace(name),
                context="radix.examples.inventory:inventory",
                node_id=f"{name}1",
                log_dir=Path(workdir),
                extra=["--rebalance-interval", "3600", *extra],
            )
            try:
                async with self.connection() as nc:
                    node.start()
                    await node.wait_running(nc)
                    yield node, nc
            finally:
                node.stop(timeout=2)  # a throwaway namespace: no need to wait for its leases' release

    async def reaction(self) -> Result:
        """An event stored -> the command a reaction sent for it stored (radix.tools.readbench)."""
        count = max(50, self.sizes.activations // 2)
        runs = [await readbench.reaction_latency(self.url, self.namespace, count) for _ in range(self.sizes.runs)]
        return _latency_result(
            "reaction, event stored to its command stored",
            [r["radix"] for r in runs],
            [r["baseline"] for r in runs],
            at="p50",
            target="",
        )

    async def projection(self) -> Result:
        """A KV projection catching up on a stored history, beside an ordered-consumer replay."""
        events = self.sizes.commands
        runs = [await readbench.projection_catch_up(self.url, self.namespace, events) for _ in range(self.sizes.runs)]
        radix, base = _median([r["radix"] for r in runs]), _median([r["baseline"] for r in runs])
        return Result(
            "projection catch-up (KV view, 8 partitions)",
            "events/s",
            round(radix),
            round(base),
            round(radix / base, 2),
            "",
            extra={"events": runs[0]["events"]},
        )

    def _cpu(self, serving: int) -> _CpuMeter:
        """The CPU time of the process serving, nats-server (if this process started it) and this one."""
        pids = {"serving": serving, "generator": os.getpid()}
        if self.server_pid is not None:
            pids["nats"] = self.server_pid
        return _CpuMeter(pids)

    # -- many aggregates ---------------------------------------------------------------------

    async def many_aggregates(self) -> list[Result]:
        """Closed loop at full speed, then an open loop at half the rate Radix reached (its latency is the
        target's); the baseline is run at that same rate. Then the same again with the node (and the
        baseline's responder) on a core of its own, where the machine has cores to spare for it."""
        radix_rates, base_rates, latencies, base_latencies = [], [], [], []
        paced, base_paced, half_rates = [], [], []
        alone, base_alone, alone_rates = [], [], []
        logged_rates, logged_latencies = [], []
        cpu: list[dict[str, float]] = []
        base_cpu: list[dict[str, float]] = []
        size = (self.sizes.aggregates, self.sizes.commands, self.sizes.in_flight)
        cores = _isolation(self.server_pid)
        for _ in range(self.sizes.runs):
            load = await self._radix_throughput(*size, pace=0.5)
            radix_rates.append(load.rate)
            latencies.extend(load.latencies)
            paced.append(load.paced)
            half_rates.append(load.paced_rate)
            base = await self._baseline_throughput(*size, paced_rate=load.paced_rate)
            logged = await self._baseline_throughput(*size, log=True)
            logged_rates.append(logged.rate)
            logged_latencies.extend(logged.latencies)
            cpu.append(load.cpu_us)
            base_cpu.append(base.cpu_us)
            base_rates.append(base.rate)
            base_latencies.extend(base.latencies)
            base_paced.append(base.paced)
            if cores is not None:
                load = await self._radix_throughput(*size, pace=0.5, cores=cores)
                alone.append(load.paced)
                alone_rates.append(load.paced_rate)
                base = await self._baseline_throughput(*size, paced_rate=load.paced_rate, cores=cores)
                base_alone.append(base.paced)
        many = self._throughput_result("many aggregates", radix_rates, base_rates, latencies, base_latencies, "≥ 0.8x")
        many.extra.update(_cpu_extra(cpu, "") | _cpu_extra(base_cpu, "baseline_"))
        results = [
            many,
            self._throughput_result(
                "many aggregates, against a responder that also writes a log entry",
                radix_rates,
                logged_rates,
                latencies,
                logged_latencies,
                "",
            ),
            _latency_result(
                "latency at half the maximum rate, cores shared (many aggregates)",
                paced,
                base_paced,
                at="p99",
                target="" if cores is not None else "p99 ≤ 5 ms",
                extra={"commands_per_s": round(_median(half_rates))},
            ),
        ]
        if cores is not None:
            results.append(
                _latency_result(
                    "latency at half the maximum rate, node on a core of its own (many aggregates)",
                    alone,
                    base_alone,
                    at="p99",
                    target="p99 ≤ 5 ms",
                    extra={"commands_per_s": round(_median(alone_rates))},
                )
            )
        return results

    async def hot_aggregate(self) -> Result:
        radix_rates, base_rates, latencies, base_latencies = [], [], [], []
        cpu: list[dict[str, float]] = []
        for _ in range(self.sizes.runs):
            load = await self._radix_throughput(1, self.sizes.hot_commands, self.sizes.in_flight)
            radix_rates.append(load.rate)
            latencies.extend(load.latencies)
            cpu.append(load.cpu_us)
            rate, lat = await self._sequential_appends(self.sizes.hot_commands)
            base_rates.append(rate)
            base_latencies.extend(lat)
        hot = self._throughput_result("hot aggregate", radix_rates, base_rates, latencies, base_latencies, "≥ 3x")
        hot.extra.update(_cpu_extra(cpu, ""))
        return hot

    def _throughput_result(
        self, name: str, radix: list[float], base: list[float], lat: list[float], base_lat: list[float], target: str
    ) -> Result:
        p50, p99, _ = quantiles(lat)
        b50, b99, _ = quantiles(base_lat)
        radix_rate, base_rate = _median(radix), _median(base)
        return Result(
            name,
            "commands/s",
            round(radix_rate),
            round(base_rate),
            round(radix_rate / base_rate, 2),
            target,
            round(p50 * 1000, 3),
            round(p99 * 1000, 3),
            {"baseline_p50_ms": round(b50 * 1000, 3), "baseline_p99_ms": round(b99 * 1000, 3)},
        )

    async def _radix_throughput(
        self, aggregates: int, commands: int, in_flight: int, pace: float = 0.0, cores: _Cores | None = None
    ) -> _Load:
        """A `radix node` in a process of its own, sent commands from this one: at full speed, then (with
        `pace`) at that fraction of the rate reached; with `cores`, the node runs on a core of its own."""
        async with self.node_process("radix", "--snapshot-every", "1000", "--idle-timeout", "3600") as (node, nc):
            assert node.process is not None
            client = Client(nc, inventory, namespace=node.namespace)
            ids = [f"a{i}" for i in range(aggregates)]
            await _gather_limited((client.send(CreateItem(name="x"), aggregate_id=i) for i in ids), in_flight)

            async def one(n: int) -> None:
                await client.send(CheckIn(count=1), aggregate_id=ids[n % aggregates], timeout=60)

            return await self._drive(one, node.process.pid, commands, in_flight, cores, lambda rate: rate * pace)

    async def _baseline_throughput(
        self,
        aggregates: int,
        commands: int,
        in_flight: int,
        paced_rate: float = 0.0,
        cores: _Cores | None = None,
        *,
        log: bool = False,
    ) -> _Load:
        """A minimal hand-written responder (`radix._responder`, in a process of its own as the node is):
        one fenced publish per request, then the reply (and with `log`, a command-log entry). At full
        speed, then (with `paced_rate`) at that rate."""
        stream = f"BENCH_{os.getpid()}_{self.run_id}"
        prefix = f"bench{os.getpid()}x{self.run_id}"
        self.run_id += 1
        responder = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "radix.tools.responder",
            self.url,
            stream,
            prefix,
            *(["log"] if log else []),
            stdout=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL,
        )
        try:
            assert responder.stdout is not None
            ready = await asyncio.wait_for(responder.stdout.readline(), 30)
            if ready.strip() != b"ready":
                raise RadixError(f"the baseline responder did not start (exit code {responder.returncode})")
            async with self.connection() as client_nc:

                async def one(n: int) -> None:
                    subject = f"{prefix}.cmd.a{n % aggregates}"
                    await client_nc.request(subject, b'{"type":"CheckIn","count":1}', timeout=60)

                return await self._drive(one, responder.pid, commands, in_flight, cores, lambda _: paced_rate)
        finally:
            if responder.returncode is None:
                responder.terminate()
            await asyncio.wait_for(responder.wait(), 20)

    async def _drive(
        self,
        one: Callable[[int], Awaitable[None]],
        serving: int,
        commands: int,
        in_flight: int,
        cores: _Cores | None,
        open_rate: Callable[[float], float],
    ) -> _Load:
        """The closed loop against process `serving` (and the CPU each process spends on it), then, if
        `open_rate(closed loop's rate)` is not 0, an open loop at that rate; with `cores`, `serving` runs
        on a core of its own throughout."""
        with cores.apart(serving) if cores is not None else contextlib.nullcontext():
            with self._cpu(serving) as cpu:
                load = await _Load.closed(one, commands, in_flight)
            load.cpu_us = cpu.per(commands)
            if rate := open_rate(load.rate):
                await load.open(one, rate, commands // 4)
        return load

    async def _sequential_appends(self, count: int) -> tuple[float, list[float]]:
        """The ceiling for one aggregate: fenced appends to one subject, one after another."""
        stream = f"BENCHSEQ_{os.getpid()}_{self.run_id}"
        self.run_id += 1
        async with self.connection() as nc:
            js = nc.jetstream()
            await js.add_stream(name=stream, subjects=[f"{stream}.>"])
            seq, latencies = 0, []
            began = time.perf_counter()
            for _ in range(count):
                t = time.perf_counter()
                reply = await nc.request(
                    f"{stream}.one", b'{"count":1}', headers={wire.H_EXPECTED_LAST_SUBJECT_SEQ: str(seq)}
                )
                seq = json.loads(reply.data)["seq"]
                latencies.append(time.perf_counter() - t)
            elapsed = time.perf_counter() - began
            await js.delete_stream(stream)
        return count / elapsed, latencies

    # -- activation --------------------------------------------------------------------------

    async def activation(self) -> list[Result]:
        namespace = self.namespace("act")
        results = []
        async with self.connection() as nc:
            async with JetStreamEventStore(nc) as store:
                addresses = [
                    Address(namespace, "inventory", "InventoryItem", f"s{i}") for i in range(self.sizes.activations)
                ]
                await _gather_limited((_history(store, a, 10) for a in addresses), 64)
                base = []
                stream = events_stream(namespace, "inventory")
                for address in addresses:
                    t = time.perf_counter()
                    await _direct_batch(nc, stream, event_subject(address))
                    base.append(time.perf_counter() - t)
            config = NodeConfig(actors=ActorConfig(snapshot_every=0), placement=PlacementConfig(rebalance_batch=0))
            async with Node({namespace: [inventory]}, nats=nc, config=config) as node:
                client = Client(nc, inventory, namespace=namespace)
                for address in addresses:
                    await client.send(CheckIn(count=1), aggregate_id=address.aggregate_id)
                times = list(node.stats.activation_seconds)
            results.append(_latency_result("activation, 10 events", [times], [base], at="p50", target="p50 ≤ 1 ms"))

            results.append(await self._cold_first_command())
            results.append(await self._replay_one_event_commits(nc, namespace))
            long = Address(namespace, "inventory", "InventoryItem", "long")
            self.say(f"  writing a {self.sizes.long_history}-event aggregate")
            async with JetStreamEventStore(nc) as store:
                await _history(store, long, self.sizes.long_history, per_commit=100)
                t = time.perf_counter()
                commits = await store.read(long)
                raw = time.perf_counter() - t
                assert sum(len(c.events) for c in commits) == self.sizes.long_history
            timings: dict[str, float] = {}
            for label, every in (("without snapshot", 0), ("with snapshot", 100)):
                config = NodeConfig(
                    actors=ActorConfig(snapshot_every=every, idle_timeout=0.5),
                    placement=PlacementConfig(rebalance_batch=0),
                )
                async with Node({namespace: [inventory]}, nats=nc, config=config) as node:
                    client = Client(nc, inventory, namespace=namespace)
                    await client.send(CheckIn(count=1), aggregate_id="long")
                    if every:
                        await eventually(_idle(node), what="passivation")
                        await client.send(CheckIn(count=1), aggregate_id="long")
                    timings[label] = node.stats.activation_seconds[-1]
            events = self.sizes.long_history
            results.append(
                Result(
                    f"activation, {events} events, no snapshot",
                    "ms",
                    round(timings["without snapshot"] * 1000, 1),
                    round(raw * 1000, 1),
                    round(raw / timings["without snapshot"], 2),
                    "replay speed",
                    extra={"events_per_s": round(events / timings["without snapshot"])},
                )
            )
            results.append(
                Result(
                    f"activation, {events} events, snapshot",
                    "ms",
                    round(timings["with snapshot"] * 1000, 2),
                    None,
                    None,
                    "≤ 20 ms",
                )
            )
        return results

    async def _cold_first_command(self) -> Result:
        """A new aggregate's first command, sent one after another (the node activates each: a lease
        claimed, an empty history read), against a command to one of those aggregates once live. Both
        go to a `radix node` in a process of its own, in rounds of fresh aggregates."""
        cold: list[list[float]] = []
        warm: list[list[float]] = []
        async with self.node_process("cold", "--idle-timeout", "3600") as (node, nc):
            client = Client(nc, inventory, namespace=node.namespace)
            for run in range(self.sizes.runs):
                ids = [f"r{run}-{i}" for i in range(self.sizes.activations)]
                for sent, latencies in ((CreateItem(name="x"), cold), (CheckIn(count=1), warm)):
                    latencies.append([])
                    for aggregate_id in ids:
                        t = time.perf_counter()
                        await client.send(sent, aggregate_id=aggregate_id)
                        latencies[-1].append(time.perf_counter() - t)
        return _latency_result(
            "a new aggregate's first command, sequential (baseline: a warm command)",
            cold,
            warm,
            at="p50",
            target="≥ 0.5 (≤ 2x a warm command)",
        )

    async def _replay_one_event_commits(self, nc: NATS, namespace: str) -> Result:
        """A history of one-event commits read whole by the store (as an activation without a snapshot
        reads it), against a plain nats-py ordered consumer that counts the same messages."""
        events = self.sizes.long_history // 2
        address = Address(namespace, "inventory", "InventoryItem", "one-event-commits")
        self.say(f"  writing {events} one-event commits")
        radix_times, raw_times = [], []
        async with JetStreamEventStore(nc) as store:
            await _history(store, address, events, per_commit=1)
            for _ in range(self.sizes.runs):
                async with JetStreamEventStore(nc) as fresh:  # nothing remembered of the aggregate
                    t = time.perf_counter()
                    commits = await fresh.read(address)
                    radix_times.append(time.perf_counter() - t)
                assert len(commits) == events
                raw_times.append(await _ordered_replay(nc, event_subject(address), events))
        radix, raw = _median(radix_times), _median(raw_times)
        return Result(
            f"replay, {events} one-event commits",
            "events/s",
            round(events / radix),
            round(events / raw),
            round(raw / radix, 2),
            "≥ 100,000 events/s",
            extra={"radix_ms": round(radix * 1000, 1), "baseline_ms": round(raw * 1000, 1)},
        )

    # -- failover and migration --------------------------------------------------------------

    async def failover(self) -> list[Result]:
        """Kill -9 of a node holding `failover_actors` live aggregates, under load, at the default settings.

        Three nodes; three times `failover_actors` aggregates are created, so each node holds about that
        many (its shards claimed where their first commands arrived). Sequential senders load 32 of the
        victim's aggregates and 32 of the survivors' (the bystanders). After the kill: the time until no
        shard names the victim (every aggregate of it is then served elsewhere at its next command),
        each loaded aggregate's time to its first command accepted elsewhere, and the bystanders'
        latencies until then against theirs before the kill, in the same run. Then one command is sent
        to each of the victim's other aggregates, 256 in flight: how fast the survivors activate them. Then a fourth
        node process starts (spawn to serving), and a survivor is drained under the same load: the pause
        of each moved aggregate, and the drain's time.
        """
        namespace = self.namespace("fo")
        holds = self.sizes.failover_actors
        with tempfile.TemporaryDirectory(prefix="radix-bench-") as workdir:
            nodes = NodeProcess.several(
                4,
                nats_url=self.url,
                namespace=namespace,
                context="radix.examples.inventory:inventory",
                log_dir=Path(workdir),
                prefix="b",
                extra=["--rebalance-interval", "3600", "--idle-timeout", "3600"],
            )
            joiner = nodes.pop()
            try:
                async with self.connection() as nc:
                    for node in nodes:
                        node.start()
                    for node in nodes:
                        await node.wait_running(nc)
                    client = Client(nc, inventory, namespace=namespace)
                    ids = [f"f{i}" for i in range(3 * holds)]
                    self.say(f"failover: creating {len(ids)} aggregates on three nodes")
                    await _gather_limited((client.send(CreateItem(name="x"), aggregate_id=i) for i in ids), 256)
                    count, owners = await shard_table(nc, namespace, inventory.name)
                    owner = {i: owners.get(shard_of(f"InventoryItem.{i}", count), "") for i in ids}
                    victim = nodes[0]
                    held = [i for i in ids if owner[i] == victim.node_id]
                    bystanders = Workload(client, [i for i in ids if owner[i] != victim.node_id][:32], _check_in)
                    loaded = Workload(client, held[:32], _check_in)
                    swept = held[32:]
                    for load in (bystanders, loaded):
                        load.start()
                    await eventually(lambda: all(loaded.ok_after(a, 0) >= 2 for a in loaded.aggregates), timeout=60)
                    before = time.monotonic()
                    await eventually(lambda: time.monotonic() - before > 2.0, timeout=5)  # a steady state
                    killed_at = time.monotonic()
                    victim.signal(signal.SIGKILL)
                    self.say(f"failover: killed {victim.node_id}, holding {len(held)}")

                    async def orphaned() -> bool:
                        return victim.node_id not in (await shard_table(nc, namespace, inventory.name))[1].values()

                    await eventually(orphaned, timeout=60, what="the victim's shards taken over")
                    taken_over = time.monotonic() - killed_at
                    await eventually(lambda: all(loaded.ok_after(a, killed_at) for a in loaded.aggregates), timeout=60)
                    recovered = [loaded.recovery(a, killed_at) for a in loaded.aggregates]
                    settled_at = killed_at + max(recovered, default=0.0)
                    calm = [
                        o.end - o.start for o in bystanders.ops if o.outcome == "ok" and before <= o.start < killed_at
                    ]
                    during = [
                        o.end - o.start
                        for o in bystanders.ops
                        if o.outcome == "ok" and killed_at <= o.start < settled_at
                    ]
                    accepted: list[float] = []
                    swept_from = time.monotonic()

                    async def sweep(aggregate: str) -> None:
                        await client.send(CheckIn(count=1), aggregate_id=aggregate, timeout=60)
                        accepted.append(time.monotonic() - swept_from)

                    self.say(f"failover: a command to each of the other {len(swept)} aggregates it held")
                    await _gather_limited((sweep(a) for a in swept), 256)
                    began = time.monotonic()
                    joiner.start()
                    await joiner.wait_running(nc)
                    join_seconds = time.monotonic() - began
                    drained = nodes[1]
                    live = (await drained.status(nc))["live_actors"]
                    began = time.monotonic()
                    drained.signal(signal.SIGTERM)
                    process = drained.process
                    assert process is not None
                    await eventually(lambda: process.poll() is not None, timeout=300)
                    drain_seconds = time.monotonic() - began
                    for load in (bystanders, loaded):
                        await load.stop()
                    summary = drained.drained()
                    if summary is None:
                        raise RadixError(f"{drained.node_id} logged no drain summary: see {drained.log_path}")
            finally:
                for node in (*nodes, joiner):
                    node.stop()
        ttl = float(PlacementConfig().liveness_ttl)
        loaded_p50, loaded_p99, _ = quantiles(recovered)
        sweep_p50, sweep_p99, _ = quantiles(accepted)
        calm_p50, calm_p99, _ = quantiles(calm)
        during_p50, during_p99, during_max = quantiles(during)
        return [
            Result(
                f"failover of a node holding {len(held)} aggregates after kill -9: every one of its shards taken "
                "over (baseline: the TTL)",
                "s",
                round(taken_over, 3),
                ttl,
                round(ttl / taken_over, 2),
                "≤ 1 s",
            ),
            Result(
                "failover of 32 loaded aggregates: first command accepted after kill -9 (baseline: the TTL)",
                "s p99",
                round(loaded_p99, 3),
                ttl,
                round(ttl / loaded_p99, 2),
                "≤ 1 s p99",
                round(loaded_p50 * 1000, 1),
                round(loaded_p99 * 1000, 1),
            ),
            Result(
                f"the {len(accepted)} other aggregates of the node killed, each sent a command at once, 256 in flight",
                "activations/s",
                round(len(accepted) / max(accepted)),
                None,
                None,
                "",
                round(sweep_p50 * 1000, 1),
                round(sweep_p99 * 1000, 1),
                {"all_accepted_ms": round(max(accepted) * 1000, 1)},
            ),
            Result(
                "bystander latency during the failover, until the loaded aggregates recovered (baseline: before)",
                "ms p99",
                round(during_p99 * 1000, 1),
                round(calm_p99 * 1000, 1),
                round(calm_p99 / during_p99, 2),
                "≤ 50 ms p99",
                round(during_p50 * 1000, 1),
                round(during_p99 * 1000, 1),
                {
                    "max_ms": round(during_max * 1000, 1),
                    "commands": len(during),
                    "before_p50_ms": round(calm_p50 * 1000, 1),
                },
            ),
            Result(
                f"a node process joining a cluster of {3 * holds:,} aggregates starts (spawn to serving)",
                "s",
                round(join_seconds, 2),
                None,
                None,
                "< 1 s",
            ),
            Result(
                "planned migration pause",
                "ms p99",
                summary["pause_ms_p99"],
                None,
                None,
                "≤ 50 ms p99",
                summary["pause_ms_p50"],
                summary["pause_ms_p99"],
            ),
            Result(
                f"drain of {live} live aggregates",
                "s",
                round(drain_seconds, 2),
                None,
                None,
                "time to drain",
                extra={"aggregates": live},
            ),
        ]

    # -- placement at scale ------------------------------------------------------------------

    async def placement(self) -> list[Result]:
        """The placement model (`radix.tools.placesim`): many logical nodes with the real placement, lease and
        allocation code on this server, a population of aggregates activating at a rate."""
        sizes = self.sizes
        model = await placesim.simulate(
            self.url,
            nodes=sizes.model_nodes,
            aggregates=sizes.model_aggregates,
            rate=sizes.model_rate,
            seconds=10.0 if sizes.runs > 1 else 5.0,
            say=self.say,
        )
        where = f"{model.nodes} nodes, {model.aggregates:,} aggregates, {model.rate:g} activations/s"
        kv = model.kv_per_s
        return [
            Result(
                f"placement model ({where}): KV writes per second cluster-wide (baseline: 2 per activation, as a "
                "lease per aggregate wrote)",
                "writes/s",
                kv["write"],
                2 * model.rate,
                round(2 * model.rate / max(kv["write"], 1e-9), 2),
                "0 per activation in an owned shard",
                extra={
                    "reads_per_s": kv["read"],
                    "delivered_per_s": kv["delivered"],
                    "claims_per_s": model.claims_per_s,
                    "forwards_per_s": model.forwards_per_s,
                    "activations": model.activations,
                    "shard_spread": model.spread,
                },
            ),
            Result(
                f"placement model ({where}): placement memory per node",
                "bytes",
                model.placement_bytes_per_node,
                None,
                None,
                "O(shards), not O(aggregates)",
            ),
            Result(
                f"placement model ({where}): a node joining starts",
                "s",
                model.start_s,
                None,
                None,
                "< 1 s",
            ),
            Result(
                f"placement model ({where}): a node joining holds its share ({model.share} shards)",
                "s",
                model.placed_s if model.placed_s is not None else -1.0,
                None,
                None,
                "rebalancing's rate limit",
            ),
            Result(
                f"placement model ({where}): every shard of a node cut off taken over ({model.failed_shards} shards)",
                "s",
                model.failover_s if model.failover_s is not None else -1.0,
                None,
                None,
                "< 1 s",
            ),
        ]

    # -- density -----------------------------------------------------------------------------

    async def density(self) -> Result:
        """Memory per idle live actor: the growth of a node process's RSS over the second half of its actors
        (the first half warms the process up: buffers, caches, the allocator's free lists). The node runs
        alone in its process, so the senders' own memory is not counted."""
        count = self.sizes.density_actors
        extra = ("--snapshot-every", "0", "--idle-timeout", "86400", "--max-actors", str(count + 10))
        async with self.node_process("mem", *extra) as (node, nc):
            assert node.process is not None
            pid = node.process.pid
            client = Client(nc, inventory, namespace=node.namespace)

            async def activate(first: int, last: int) -> int:
                await _gather_limited(
                    (client.send(CreateItem(name="x"), aggregate_id=f"m{i}") for i in range(first, last)), 256
                )
                return _rss(pid)

            half = count // 2
            before = await activate(0, half)
            after = await activate(half, count)
            live = (await node.status(nc, timeout=5))["live_actors"]
        per_actor = (after - before) / max(1, count - half)
        return Result(
            f"density at {live} idle actors",
            "bytes/actor",
            round(per_actor),
            2048.0,
            round(2048 / per_actor, 2),
            "≤ 2 KiB",
        )


@dataclass
class _Load:
    """What one load generator measured: the closed loop's rate and latencies, and an open loop's."""

    rate: float
    latencies: list[float]
    paced_rate: float = 0.0
    paced: list[float] = field(default_factory=list)
    cpu_us: dict[str, float] = field(default_factory=dict)  # CPU per command in the closed loop, by process

    @classmethod
    async def closed(cls, one: Callable[[int], Awaitable[None]], commands: int, in_flight: int) -> _Load:
        """`in_flight` senders, each sending its next command once the last is answered; sender k sends
        commands k, k + in_flight, ..., so no two in flight share an aggregate when there are at least as
        many aggregates as senders."""
        latencies: list[float] = []

        async def sender(k: int) -> None:
            for n in range(k, commands, in_flight):
                began = time.perf_counter()
                await one(n)
                latencies.append(time.perf_counter() - began)

        began = time.perf_counter()
        await asyncio.gather(*(sender(k) for k in range(min(in_flight, commands))))
        return cls(commands / (time.perf_counter() - began), latencies)

    async def open(self, one: Callable[[int], Awaitable[None]], rate: float, commands: int) -> None:
        """Send `commands` at `rate` a second whether or not earlier ones were answered (an open loop, as
        independent clients send), and record their latencies."""
        self.paced_rate = rate
        tasks: list[asyncio.Task[None]] = []

        async def timed(n: int) -> None:
            began = time.perf_counter()
            await one(n)
            self.paced.append(time.perf_counter() - began)

        began = time.perf_counter()
        for n in range(commands):
            delay = began + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(timed(n)))
        await asyncio.gather(*tasks)


class _CpuMeter:
    """CPU time (user and system) that processes spend while the `with` block runs."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.spent: dict[str, float] = {}

    def __enter__(self) -> _CpuMeter:
        self._before = {role: _cpu_seconds(pid) for role, pid in self.pids.items()}
        return self

    def __exit__(self, *_: object) -> None:
        self.spent = {role: _cpu_seconds(pid) - self._before[role] for role, pid in self.pids.items()}

    def per(self, commands: int) -> dict[str, float]:
        """Microseconds of CPU per command, by process."""
        return {role: seconds * 1e6 / commands for role, seconds in self.spent.items()}


def _cpu_seconds(pid: int) -> float:
    """A process's CPU time so far (Linux; 0 where /proc is not there)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_extra(runs: list[dict[str, float]], prefix: str) -> dict[str, float]:
    """The median CPU per command of each process over the runs, as result figures."""
    roles = runs[0].keys() if runs else ()
    return {f"{prefix}{role}_cpu_us": round(_median([run[role] for run in runs])) for role in roles}


@dataclass(frozen=True)
class _Cores:
    """A layout of the machine's cores: one for the process measured, the rest for the load generator
    (this process) and the embedded nats-server, so that the one measured never waits for them."""

    alone: frozenset[int]
    others: frozenset[int]
    server_pid: int

    @contextlib.contextmanager
    def apart(self, pid: int) -> Iterator[None]:
        everything = self.alone | self.others
        _pin(pid, self.alone)
        _pin(os.getpid(), self.others)
        _pin(self.server_pid, self.others)
        try:
            yield
        finally:
            _pin(os.getpid(), everything)
            _pin(self.server_pid, everything)


def _isolation(server_pid: int | None) -> _Cores | None:
    """A core for the process measured and the rest for the others, where that is possible: Linux, at least
    two cores, and a nats-server this process started."""
    if server_pid is None or not hasattr(os, "sched_setaffinity"):
        return None
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return None
    return _Cores(frozenset(cores[-1:]), frozenset(cores[:-1]), server_pid)


def _pin(pid: int, cores: frozenset[int]) -> None:
    """Run every thread of a process on `cores` (threads started later inherit it from their parent)."""
    for thread in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(thread), cores)


async def _gather_limited(coroutines: Any, limit: int) -> None:
    gate = asyncio.Semaphore(limit)

    async def limited(coroutine: Awaitable[object]) -> None:
        async with gate:
            await coroutine

    await asyncio.gather(*(limited(c) for c in coroutines))


async def _history(store: JetStreamEventStore, address: Address, events: int, per_commit: int = 1) -> None:
    data = EventData("ItemsCheckedIn", "1.0", msgspec.Raw(b'{"count":1}'))
    created = EventData("ItemCreated", "1.0", msgspec.Raw(b'{"name":"x"}'))
    version = 0
    while version < events:
        batch = [created if version == 0 and i == 0 else data for i in range(min(per_commit, events - version))]
        commit = await store.append(address, batch, expected_version=version, command_id=f"h{version}")
        version = commit.version


async def _direct_batch(nc: NATS, stream: str, subject: str) -> int:
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    await nc.publish(
        direct_get(stream),
        json.dumps({"seq": 1, "next_by_subj": subject, "batch": 512}).encode(),
        reply=inbox,
    )
    count = 0
    while True:
        msg = await sub.next_msg(timeout=5)
        if msg.headers and msg.headers.get("Status"):
            break
        count += 1
    await sub.unsubscribe()
    return count


async def _ordered_replay(nc: NATS, subject: str, count: int) -> float:
    """Seconds a plain nats-py ordered consumer takes to deliver `count` messages of `subject` to a callback."""
    done = asyncio.get_running_loop().create_future()
    seen = 0

    async def counted(msg: Msg) -> None:
        nonlocal seen
        seen += 1
        if seen == count and not done.done():
            done.set_result(None)

    t = time.perf_counter()
    sub = await nc.jetstream().subscribe(subject, cb=counted, ordered_consumer=True)
    try:
        await asyncio.wait_for(done, 60)
        return time.perf_counter() - t
    finally:
        await sub.unsubscribe()


def _check_in(aggregate: str, n: int) -> CheckIn:
    return CheckIn(count=1)


def _idle(node: Node) -> Callable[[], bool]:
    return lambda: node.live_actors == 0


def _rss(pid: int) -> int:
    """A process's resident memory in bytes."""
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def run_bench(
    *, url: str | None, quick: bool, runs: int | None, only: tuple[str, ...], progress: Callable[[str], None]
) -> list[Result]:
    """Run the scenarios (all, or `only`), each beside its baseline; return their results."""
    sizes = Sizes.pick(quick, runs)
    async with contextlib.AsyncExitStack() as stack:
        server_pid = None
        if url is None:
            server = await stack.enter_async_context(EmbeddedNats())
            url, server_pid = server.url, server.process.pid
        bench = _Bench(url, sizes, progress, server_pid)
        results: list[Result] = []
        steps: dict[str, Callable[[], Awaitable[Result | list[Result]]]] = {
            "many": bench.many_aggregates,
            "hot": bench.hot_aggregate,
            "activation": bench.activation,
            "failover": bench.failover,
            "placement": bench.placement,
            "density": bench.density,
            "reaction": bench.reaction,
            "projection": bench.projection,
        }
        for name in only or SCENARIOS:
            progress(f"running {name} ...")
            stolen = _steal_seconds()
            outcome = await steps[name]()
            stolen = round(_steal_seconds() - stolen, 2)
            for result in outcome if isinstance(outcome, list) else [outcome]:
                result.extra["host_steal_s"] = stolen
                results.append(result)
    return results


def _steal_seconds() -> float:
    """CPU time the hypervisor gave other guests while this machine had work for it, so far (the `steal`
    of /proc/stat; 0 where there is none). A run with much of it is slower on both sides, in its tails
    most of all: it is reported beside the figures."""
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
    except OSError:
        return 0.0
    return int(fields[8]) / os.sysconf("SC_CLK_TCK") if len(fields) > 8 and fields[0] == "cpu" else 0.0


def table(results: list[Result]) -> str:
    """The results as a Markdown table, with the CPU time the host took from this machine meanwhile."""
    lines = [
        "| scenario | Radix | baseline | ratio | p50 ms | p99 ms | target | host steal s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        baseline = "" if r.baseline is None else f"{r.baseline:g}"
        ratio = "" if r.ratio is None else f"{r.ratio:g}x"
        p50 = "" if r.p50_ms is None else f"{r.p50_ms:g}"
        p99 = "" if r.p99_ms is None else f"{r.p99_ms:g}"
        steal = r.extra.get("host_steal_s", "")
        lines.append(
            f"| {r.scenario} | {r.radix:g} {r.unit} | {baseline} | {ratio} | {p50} | {p99} | {r.target} | {steal} |"
        )
    return "\n".join(lines)


def as_json(results: list[Result]) -> str:
    return json.dumps([asdict(r) for r in results], indent=2)
