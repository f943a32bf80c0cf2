"""The cluster under test: three NATS servers (R3 streams and buckets), Radix node processes behind
proxies, bank clients recording every command, and faults injected on a schedule.

    history, results = await run_chaos(ChaosSpec(seed=7), out=Path("chaos-7"))

Each node reaches every NATS server through a `TcpProxy` of its own, so a partition or a
slow link can be put between one node and NATS; the servers do not advertise their client
URLs, so a client behind a proxy stays behind it. Every run ends healed: paused processes
resumed, killed ones restarted, links restored; then the cluster is left to settle, the
clients must make progress again, and every account is read from each server in turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import msgspec
import nats
import nats.errors
from nats.aio.client import Client as NATS

from radix.client import Client
from radix.errors import CommandConflictError, CommandRejectedError, require
from radix.examples.bank import Deposit, Open, Withdraw, bank
from radix.store import JetStreamEventStore, StoreConfig
from radix.testing import NodeProcess, TcpProxy, eventually, lease_owners
from radix.tools.catalog import MUTATIONS
from radix.tools.chaos.checker import Result, check, summary
from radix.tools.chaos.faults import KINDS, NODE_KINDS, SERVER_KINDS, Fault, schedule
from radix.tools.chaos.history import (
    Activation,
    FaultRecord,
    History,
    Op,
    Outcome,
    Read,
    Run,
    StoredCommit,
    StoredEvent,
    write_history,
)
from radix.transport.connection import ConnectOptions, connect
from radix.transport.server import EmbeddedCluster, EmbeddedNats
from radix.wire.names import Address, events_stream

__all__ = ["ChaosServers", "ChaosSpec", "chaos_servers", "run_chaos"]

CONTEXT = "radix.examples.bank:bank"
AGGREGATE = "Account"


@dataclass(frozen=True, kw_only=True)
class ChaosSpec:
    """One run: the seed, which faults and how many, the cluster's size and the workload's."""

    seed: int
    kinds: tuple[str, ...] = KINDS
    faults: int = 6
    nodes: int = 3
    accounts: int = 6
    clients: int = 8
    ttl: int = 2
    mutation: str | None = None
    progress_timeout: float = 60.0
    min_ok: int = 50
    aim_at_owners: bool = False
    """Node faults hit the node holding the most leases, rather than the one the schedule names."""

    def __post_init__(self) -> None:
        mutations = ", ".join(MUTATIONS)
        require(self.mutation is None or self.mutation in MUTATIONS, "mutation", self.mutation, f"one of {mutations}")
        require(self.nodes >= 2, "nodes", self.nodes, "a run needs at least two nodes")
        require(self.accounts >= 1, "accounts", self.accounts, "a run needs at least one account")
        require(self.clients >= 1, "clients", self.clients, "a run needs at least one client")
        require(self.faults >= 0, "faults", self.faults, "must be 0 or more")

    @property
    def scenario(self) -> str:
        return "mixed" if set(self.kinds) == set(KINDS) else ",".join(self.kinds)

    def plan(self, servers: int) -> list[Fault]:
        return schedule(self.seed, count=self.faults, kinds=self.kinds, nodes=self.nodes, servers=servers, ttl=self.ttl)


@dataclass
class ChaosServers:
    """Three NATS servers for chaos runs: clients stay behind their proxies, and every route between
    two servers goes through a proxy of its own, so servers can be partitioned from each other."""

    cluster: EmbeddedCluster
    routes: dict[tuple[int, int], TcpProxy]

    @property
    def servers(self) -> list[EmbeddedNats]:
        return self.cluster.servers

    @property
    def urls(self) -> list[str]:
        return self.cluster.urls

    def isolate(self, index: int) -> None:
        """Black-hole every route to and from server `index`."""
        for (i, j), proxy in self.routes.items():
            if index in (i, j):
                proxy.mode = "blackhole"

    def reconnect(self) -> None:
        """Restore every route, dropping the connections that were cut."""
        for proxy in self.routes.values():
            if proxy.mode != "pass":
                proxy.mode = "pass"
                proxy.reset()


@contextlib.asynccontextmanager
async def chaos_servers(size: int = 3) -> AsyncIterator[ChaosServers]:
    """Start `size` NATS servers with a proxy on every route; stop them all afterwards."""
    cluster = EmbeddedCluster(size=size, advertise=False)
    routes: dict[tuple[int, int], TcpProxy] = {}
    try:
        for i in range(size):
            for j in range(size):
                if i != j:
                    routes[(i, j)] = await TcpProxy("127.0.0.1", cluster.route_ports[j]).start()
                    cluster.links[(i, j)] = routes[(i, j)].url
        async with cluster:
            yield ChaosServers(cluster, routes)
    finally:
        for proxy in routes.values():
            await proxy.stop()


class _Recorder:
    """The history as it is made: times are seconds since the run began."""

    def __init__(self) -> None:
        self.began = time.monotonic()
        self.ops: list[Op] = []
        self.faults: list[FaultRecord] = []

    def now(self) -> float:
        return round(time.monotonic() - self.began, 4)

    def fault(self, kind: str, target: str, phase: Literal["start", "end"]) -> None:
        self.faults.append(FaultRecord(kind=kind, target=target, phase=phase, at=self.now()))


@dataclass
class _Cluster:
    """The NATS servers, the nodes and their proxies, and a connection of the harness's own."""

    servers: ChaosServers
    nodes: list[NodeProcess]
    proxies: dict[str, list[TcpProxy]]
    nc: NATS
    namespace: str
    accounts: list[str]
    stopped: set[str] = field(default_factory=set)  # nodes not running (killed or drained)

    async def busiest(self) -> NodeProcess | None:
        """The running node that holds the most of the accounts' leases."""
        addresses = [Address(self.namespace, "bank", AGGREGATE, a) for a in self.accounts]
        with contextlib.suppress(Exception):
            held = Counter((await lease_owners(self.nc, addresses)).values())
            running = [n for n in self.nodes if n.node_id not in self.stopped and held[n.node_id]]
            return max(running, key=lambda n: held[n.node_id], default=None)
        return None

    async def start_node(self, node: NodeProcess) -> None:
        node.start()
        self.stopped.discard(node.node_id)

    def kill_node(self, node: NodeProcess) -> None:
        assert node.process is not None
        node.process.kill()
        node.process.wait()
        self.stopped.add(node.node_id)

    async def stream_leader(self) -> str | None:
        with contextlib.suppress(Exception):
            info = await self.nc.jetstream(timeout=2).stream_info(events_stream(self.namespace, "bank"))
            return info.cluster.leader if info.cluster else None
        return None

    async def heal(self) -> None:
        """Resume, restart and reconnect everything, whatever faults left behind."""
        self.servers.reconnect()
        for server in self.servers.servers:
            if server.running:
                server.process.send_signal(signal.SIGCONT)
            else:
                await asyncio.to_thread(server.start)
        for node in self.nodes:
            for proxy in self.proxies[node.node_id]:
                if proxy.mode != "pass" or proxy.delay or proxy.upstream_delay:
                    proxy.mode, proxy.delay, proxy.upstream_delay = "pass", 0.0, 0.0
                    proxy.reset()
            if node.process is not None and node.process.poll() is None:
                node.process.send_signal(signal.SIGCONT)
            else:
                await self.start_node(node)

    async def settled(self, timeout: float) -> None:
        """Wait until every node runs and every replica of the events stream is current."""
        for node in self.nodes:
            await node.wait_running(self.nc, timeout=timeout)

        async def replicas_current() -> bool:
            try:
                info = await self.nc.jetstream(timeout=2).stream_info(events_stream(self.namespace, "bank"))
            except Exception:
                return False
            replicas = (info.cluster.replicas if info.cluster else None) or []
            return (
                info.cluster is not None
                and info.cluster.leader is not None
                and all(r.current and not r.offline and not r.lag for r in replicas)
            )

        await eventually(replicas_current, timeout=timeout, what="every replica of the events stream current")


# -- faults -------------------------------------------------------------------------------------


async def _inject(cluster: _Cluster, fault: Fault, recorder: _Recorder, *, aim_at_owners: bool) -> None:
    """Inject one fault, hold it, heal it; record both ends."""
    kind = fault.kind
    servers = cluster.servers.servers
    node = cluster.nodes[fault.target % len(cluster.nodes)]
    if aim_at_owners and kind in NODE_KINDS:
        node = await cluster.busiest() or node
    proxies = cluster.proxies[node.node_id]
    if kind in SERVER_KINDS:
        index = fault.target % len(servers)
        if kind in ("kill-leader", "partition-leader"):
            leader = await cluster.stream_leader()
            index = next((i for i, s in enumerate(servers) if s.server_name == leader), index)
        server = servers[index]
        target = server.server_name or "?"
        if not server.running:
            return  # already down
        recorder.fault(kind, target, "start")
        if kind == "pause-nats":
            server.process.send_signal(signal.SIGSTOP)
            await asyncio.sleep(fault.hold)
            server.process.send_signal(signal.SIGCONT)
        elif kind in ("partition-nats", "partition-leader"):
            cluster.servers.isolate(index)
            await asyncio.sleep(fault.hold)
            cluster.servers.reconnect()
        else:
            server.kill()
            await asyncio.sleep(fault.hold)
            await asyncio.to_thread(server.start)
        recorder.fault(kind, target, "end")
        return
    if kind == "rolling-restart":
        recorder.fault(kind, "all", "start")
        for each in cluster.nodes:
            if each.node_id in cluster.stopped:
                continue
            each.signal(signal.SIGTERM)
            await asyncio.to_thread(_wait_exit, each, 30.0)
            await cluster.start_node(each)
            await each.wait_running(cluster.nc, timeout=30)
        recorder.fault(kind, "all", "end")
        return
    if node.node_id in cluster.stopped or node.process is None or node.process.poll() is not None:
        return  # not running: nothing to do
    recorder.fault(kind, node.node_id, "start")
    if kind == "kill-node":
        cluster.kill_node(node)
        await asyncio.sleep(fault.hold)
        await cluster.start_node(node)
    elif kind in ("pause-node", "pause-kill-node"):
        node.signal(signal.SIGSTOP)
        await asyncio.sleep(fault.hold)
        if kind == "pause-kill-node":
            cluster.kill_node(node)
            await cluster.start_node(node)
        else:
            node.signal(signal.SIGCONT)
    elif kind == "drain-node":
        node.signal(signal.SIGTERM)
        await asyncio.to_thread(_wait_exit, node, 30.0)
        cluster.stopped.add(node.node_id)
        await asyncio.sleep(fault.hold)
        await cluster.start_node(node)
    elif kind == "slow-node":
        for proxy in proxies:
            proxy.upstream_delay = fault.hold
        await asyncio.sleep(fault.hold)
        for proxy in proxies:
            proxy.upstream_delay = 0.0
    elif kind in ("partition-node", "partition-kill-node"):
        for proxy in proxies:
            proxy.mode = "blackhole"
        await asyncio.sleep(fault.hold)
        if kind == "partition-kill-node":
            cluster.kill_node(node)
        for proxy in proxies:
            proxy.mode = "pass"
            proxy.reset()  # the stale connections are dropped; the node reconnects through the healed links
        if kind == "partition-kill-node":
            await cluster.start_node(node)
    recorder.fault(kind, node.node_id, "end")


def _wait_exit(node: NodeProcess, timeout: float) -> None:
    assert node.process is not None
    try:
        node.process.wait(timeout)
    except Exception:
        node.process.kill()
        node.process.wait()


# -- the workload ---------------------------------------------------------------------------------


class _Clients:
    """Concurrent bank clients, one command in flight each, every command with its own id."""

    def __init__(self, client: Client, spec: ChaosSpec, recorder: _Recorder) -> None:
        self.client = client
        self.spec = spec
        self.recorder = recorder
        self.accounts = [f"acct-{i}" for i in range(1, spec.accounts + 1)]  # as the cluster names them
        self.stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def open_accounts(self) -> None:
        for account in self.accounts:
            await self.send("setup", account, Open(owner=account), f"{account}-open", None)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._drive(i)) for i in range(self.spec.clients)]

    async def finish(self) -> None:
        self.stop.set()
        await asyncio.gather(*self._tasks)

    def ok_since(self, moment: float) -> set[str]:
        return {o.aggregate for o in self.recorder.ops if o.outcome == "ok" and o.start >= moment}

    async def _drive(self, index: int) -> None:
        rng = random.Random(self.spec.seed * 1000 + index)
        process = f"c{index}"
        seen: dict[str, int] = {}
        last_ok: tuple[str, Deposit | Withdraw, str, int | None] | None = None
        command: Deposit | Withdraw
        n = 0
        while not self.stop.is_set():
            if last_ok is not None and rng.random() < 0.03:
                # A client that lost a reply sends the command again, with the same id.
                await self.send(process, *last_ok)
                continue
            n += 1
            account = rng.choice(self.accounts)
            amount = rng.randint(1, 50)
            command = Deposit(amount=amount) if rng.random() < 0.55 else Withdraw(amount=amount)
            expected = seen.get(account) if isinstance(command, Withdraw) else None
            command_id = f"{process}-{n}"
            op = await self.send(process, account, command, command_id, expected)
            if op.outcome == "info":  # no answer: send it again, once, as a client would
                op = await self.send(process, account, command, command_id, expected)
            if op.version is not None:
                seen[account] = op.version
            if op.outcome == "ok":
                last_ok = (account, command, command_id, expected)

    async def send(
        self,
        process: str,
        account: str,
        command: Open | Deposit | Withdraw,
        command_id: str,
        expected: int | None,
    ) -> Op:
        start = self.recorder.now()
        outcome: Outcome = "info"
        reason, version = "", None
        try:
            result = await self.client.send(
                command, aggregate_id=account, command_id=command_id, expected_version=expected, timeout=8.0
            )
            outcome, version = "ok", result.version
        except (CommandRejectedError, CommandConflictError) as e:
            outcome, reason, version = "fail", str(e), e.reply.version
        except Exception as e:  # an error reply, a time-out, a lost connection: maybe applied
            reason = str(e) or repr(e)
        op = Op(
            process=process,
            aggregate=account,
            command_id=command_id,
            command=type(command).__name__,
            amount=getattr(command, "amount", 0),
            expected_version=expected,
            outcome=outcome,
            reason=reason[:300],
            version=version,
            start=start,
            end=self.recorder.now(),
        )
        self.recorder.ops.append(op)
        return op


# -- the run --------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _cluster_under_test(spec: ChaosSpec, out: Path, servers: ChaosServers | None) -> AsyncIterator[_Cluster]:
    async with contextlib.AsyncExitStack() as stack:
        if servers is None:
            servers = await stack.enter_async_context(chaos_servers())
        nc = await connect(ConnectOptions(servers=servers.urls), name="radix chaos")
        stack.push_async_callback(nc.close)
        namespace = f"chaos-{spec.seed}-{secrets.token_hex(2)}"
        launcher = ("-m", "radix") if spec.mutation is None else ("-m", "radix.cli.mutant", spec.mutation)
        logs = out / "nodes"
        logs.mkdir(parents=True, exist_ok=True)
        nodes: list[NodeProcess] = []
        proxies: dict[str, list[TcpProxy]] = {}
        for i in range(1, spec.nodes + 1):
            node_id = f"node-{i}"
            links = [await TcpProxy("127.0.0.1", _port(s.url)).start() for s in servers.servers]
            proxies[node_id] = links
            nodes.append(
                NodeProcess(
                    nats_url=",".join(p.url for p in links),
                    namespace=namespace,
                    context=CONTEXT,
                    node_id=node_id,
                    log_dir=logs,
                    launcher=launcher,
                    extra=[
                        "--replicas",
                        "3",
                        "--liveness-ttl",
                        str(spec.ttl),
                        "--snapshot-every",
                        "20",
                        "--rebalance-interval",
                        "1",
                        "--log-level",
                        "debug",
                    ],
                )
            )
        cluster = _Cluster(servers, nodes, proxies, nc, namespace, [f"acct-{i}" for i in range(1, spec.accounts + 1)])
        try:
            for node in nodes:
                node.start()
            for node in nodes:
                await node.wait_running(nc, timeout=60)
            yield cluster
        finally:
            for node in nodes:  # blocking on purpose: no cancellation may leave a node process behind
                node.stop(10.0)
            for links in proxies.values():
                for proxy in links:
                    await proxy.stop()


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


async def run_chaos(
    spec: ChaosSpec,
    out: Path,
    *,
    servers: ChaosServers | None = None,
    say: Callable[[str], None] = print,
    stop: asyncio.Event | None = None,
) -> tuple[History, list[Result]]:
    """Run one seed's schedule against a fresh namespace; write `history.jsonl` and `results.txt` to `out`.

    `servers` are running `chaos_servers()` to reuse; by default they are started for the run.
    Setting `stop` skips the faults still to come: the run heals, checks and ends as usual.
    """
    await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)
    faults = spec.plan(3)
    say(f"radix chaos: seed {spec.seed}, scenario {spec.scenario}, mutation {spec.mutation or 'none'}")
    for fault in faults:
        say(f"  planned: {fault}")
    recorder = _Recorder()
    run = Run(seed=spec.seed, scenario=spec.scenario, mutation=spec.mutation)
    reads: list[Read] = []
    async with _cluster_under_test(spec, out, servers) as cluster:
        run.nodes = [n.node_id for n in cluster.nodes]
        run.servers = [s.server_name or "?" for s in cluster.servers.servers]
        async with Client(ConnectOptions(servers=cluster.servers.urls), bank, namespace=cluster.namespace) as client:
            clients = _Clients(client, spec, recorder)
            await clients.open_accounts()
            clients.start()
            try:
                await eventually(lambda: len(clients.ok_since(0)) == spec.accounts, timeout=30, what="load running")
                for fault in faults:
                    if stop is not None and stop.is_set():
                        say("  stopping: the faults still to come are skipped")
                        break
                    await _inject(cluster, fault, recorder, aim_at_owners=spec.aim_at_owners)
                    say(f"  {recorder.now():7.1f}s {fault.kind} done; {_tally(recorder.ops)}")
                    await asyncio.sleep(fault.gap)
                await cluster.heal()
                await cluster.settled(timeout=spec.progress_timeout)
                run.healed_at = recorder.now()
                await eventually(
                    lambda: len(clients.ok_since(run.healed_at or 0)) == spec.accounts,
                    timeout=spec.progress_timeout,
                    what="every account accepting commands after the heal",
                )
            except TimeoutError as e:
                say(f"  {e}")
            finally:
                await clients.finish()
                run.ended_at = recorder.now()
        await cluster.heal()
        with contextlib.suppress(TimeoutError):
            await cluster.settled(timeout=spec.progress_timeout)
        reads.extend(await _stable_reads(cluster, clients.accounts))
        activations = [a for node in cluster.nodes for a in _activations(node)]
    history = History(run, recorder.ops, activations, recorder.faults, reads)
    write_history(out / "history.jsonl", history.records())
    results = check(history, min_ok=spec.min_ok)
    (out / "results.txt").write_text(summary(results) + "\n")
    return history, results


def _tally(ops: list[Op]) -> str:
    counts = {k: sum(1 for o in ops if o.outcome == k) for k in ("ok", "fail", "info")}
    return " ".join(f"{k} {v}" for k, v in counts.items())


async def _stable_reads(cluster: _Cluster, accounts: list[str], *, rounds: int = 5) -> list[Read]:
    """Every server's reads of every account, taken while nothing was written: a command still in flight
    when the clients stopped (a retry in a mailbox, a forward) may land between two servers' reads, which
    would look like replicas that differ. Read again, up to `rounds` times, until the stream stood still."""
    reads: list[Read] = []
    for _ in range(rounds):
        before = await _last_sequence(cluster)
        reads = [
            r for server in cluster.servers.servers for r in await _final_reads(server, cluster.namespace, accounts)
        ]
        if before is not None and before == await _last_sequence(cluster):
            break
    return reads


async def _last_sequence(cluster: _Cluster) -> int | None:
    try:
        info = await cluster.nc.jetstream(timeout=2).stream_info(events_stream(cluster.namespace, "bank"))
    except Exception:
        return None
    return int(info.state.last_seq)


async def _final_reads(server: EmbeddedNats, namespace: str, accounts: list[str]) -> list[Read]:
    """Every account's stored history as this one server serves it (direct gets answered by its replica)."""
    name = server.server_name or "?"
    try:
        nc = await nats.connect(server.url, allow_reconnect=False, connect_timeout=5)
    except Exception as e:
        return [Read(server=name, aggregate=a, commits=[], error=repr(e)) for a in accounts]
    reads = []
    try:
        async with JetStreamEventStore(nc, config=StoreConfig(replicas=3, unavailable_for=10)) as store:
            for account in accounts:
                try:
                    commits = await store.read(Address(namespace, "bank", AGGREGATE, account))
                except Exception as e:
                    reads.append(Read(server=name, aggregate=account, commits=[], error=repr(e)))
                    continue
                reads.append(
                    Read(
                        server=name,
                        aggregate=account,
                        commits=[
                            StoredCommit(
                                position=c.position,
                                node=c.writer.node if c.writer else None,
                                epoch=c.writer.epoch if c.writer else None,
                                events=[
                                    StoredEvent(e.version, e.command_id, e.type, _amount.decode(e.data).amount)
                                    for e in c.events
                                ],
                            )
                            for c in commits
                        ],
                    )
                )
    finally:
        await nc.close()
    return reads


class _Amount(msgspec.Struct):
    amount: int = 0


_amount = msgspec.json.Decoder(_Amount)


def _activations(node: NodeProcess) -> list[Activation]:
    """The activations a node logged (it logs at debug level in a chaos run)."""
    found = []
    with contextlib.suppress(FileNotFoundError):
        for line in node.log_path.read_text(errors="replace").splitlines():
            if '"event": "activated"' not in line:
                continue
            with contextlib.suppress(msgspec.DecodeError, KeyError):
                entry = msgspec.json.decode(line)
                found.append(
                    Activation(
                        node=entry["node"],
                        aggregate=str(entry["aggregate"]).rpartition("/")[2],
                        epoch=int(entry["epoch"]),
                        version=int(entry["version"]),
                    )
                )
    return found
