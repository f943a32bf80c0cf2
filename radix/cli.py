"""The `radix` command line: run nodes, send commands, watch and steer a cluster."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import os
import random
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import msgspec
import nats.errors
import uvloop
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import api as js_api

from radix import wire
from radix.bench import SCENARIOS, as_json, run_bench, table
from radix.chaos import KINDS as FAULT_KINDS
from radix.chaos import MUTATIONS, ChaosSpec, run_chaos
from radix.chaos import summary as chaos_summary
from radix.chaos.soak import soak
from radix.client import command_headers, request_command
from radix.connection import ConnectOptions, connect
from radix.demo import run_demo
from radix.domain import BoundedContext
from radix.errors import RadixError
from radix.logs import configure_logging, logger
from radix.names import (
    PREFIX,
    Address,
    command_subject,
    leases_bucket,
    node_inbox,
    nodes_bucket,
    validate_namespace,
    validate_node_id,
)
from radix.runtime import Node, NodeConfig, tune_gc
from radix.server import EmbeddedNats
from radix.store import StoreConfig
from radix.store._streams import all_streams
from radix.store.kv import KVBucket

__all__ = ["load_context", "main"]

DEFAULT_URL = "nats://127.0.0.1:4222"
#: Where `radix node` notes the URL of the nats-server it embedded, for the other commands to find.
URL_FILE = Path(".radix") / "nats.url"


def load_context(spec: str) -> BoundedContext:
    """The bounded context named by `module.path[:attribute]` (the attribute may be left out if there is one)."""
    module_name, _, attribute = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise RadixError(f"cannot import {module_name!r} for --context {spec}: {e}") from None
    if attribute:
        found = getattr(module, attribute, None)
        if not isinstance(found, BoundedContext):
            raise RadixError(f"{spec} is not a BoundedContext (it is {type(found).__name__})")
        return found
    contexts = [v for v in vars(module).values() if isinstance(v, BoundedContext)]
    if len(contexts) != 1:
        raise RadixError(f"{module_name} defines {len(contexts)} BoundedContexts: name one as {module_name}:NAME")
    return contexts[0]


def _servers(args: argparse.Namespace) -> list[str]:
    """--nats, else $RADIX_NATS, else the embedded server a local `radix node` noted, else the default URL."""
    given = args.nats or os.environ.get("RADIX_NATS", "")
    if given:
        return [u for u in given.split(",") if u]
    if URL_FILE.is_file():
        return [URL_FILE.read_text().strip()]
    return [DEFAULT_URL]


def _options(args: argparse.Namespace, servers: Sequence[str] | None = None) -> ConnectOptions:
    return ConnectOptions(
        servers=tuple(servers or _servers(args)),
        user=args.user,
        password=args.password,
        token=args.token,
        credentials=args.creds,
        tls_ca=args.tls_ca,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
    )


@contextlib.asynccontextmanager
async def _connected(args: argparse.Namespace) -> AsyncIterator[NATS]:
    options = _options(args)
    try:
        nc = await connect(options, name="radix cli")
    except Exception as e:
        raise RadixError(
            f"cannot reach NATS at {', '.join(options.servers)} ({e!r}): pass --nats URL or set RADIX_NATS"
        ) from None
    try:
        yield nc
    finally:
        await nc.close()


def _plain(value: Any) -> Any:
    """A msgspec value as plain JSON types (embedded raw JSON included)."""
    return msgspec.json.decode(msgspec.json.encode(value))


def _print(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True), flush=True)


# -- radix node ------------------------------------------------------------------------------


async def _node(args: argparse.Namespace) -> int:
    contexts = [load_context(spec) for spec in args.context]
    config = NodeConfig(
        **({"node_id": args.node_id} if args.node_id else {}),
        liveness_ttl=args.liveness_ttl,
        idle_timeout=args.idle_timeout,
        max_actors=args.max_actors,
        snapshot_every=args.snapshot_every,
        rebalance_interval=args.rebalance_interval,
        store=StoreConfig(replicas=args.replicas),
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
    )
    async with contextlib.AsyncExitStack() as stack:
        servers = [u for u in (args.nats or os.environ.get("RADIX_NATS", "")).split(",") if u]
        if not servers:
            servers = await _embedded(stack)
        node = Node(dict.fromkeys(args.namespace, contexts), nats=_options(args, servers), config=config)
        loop = asyncio.get_running_loop()
        handling: list[asyncio.Task[None]] = []

        def on_signal() -> None:
            if not handling:
                logger.info("signal received: draining (send it again to stop at once)")
                handling.append(loop.create_task(node.drain()))
            else:
                handling.append(loop.create_task(node.stop()))

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        await node.start()
        tune_gc()
        print(f"radix: node {node.node_id} serving {', '.join(node.status().hosts)}", file=sys.stderr, flush=True)
        await node.wait_stopped()
    return 0


async def _embedded(stack: contextlib.AsyncExitStack) -> list[str]:
    """The URL of a nats-server embedded under .radix/: the one another local node started, or a new one."""
    if URL_FILE.is_file():
        url = URL_FILE.read_text().strip()
        try:
            probe = await nats.connect(url, allow_reconnect=False, connect_timeout=1)
            await probe.close()
            print(f"radix: using the embedded nats-server at {url} (noted in {URL_FILE})", file=sys.stderr)
            return [url]
        except Exception:
            URL_FILE.unlink(missing_ok=True)
    data = Path(".radix") / "nats"
    data.mkdir(parents=True, exist_ok=True)
    server = await stack.enter_async_context(EmbeddedNats(store_dir=data.resolve()))
    URL_FILE.write_text(server.url + "\n")
    stack.callback(URL_FILE.unlink, missing_ok=True)
    print(
        f"radix: no --nats given: started an embedded nats-server at {server.url} (data in {data}/; "
        "it stops with this node)",
        file=sys.stderr,
        flush=True,
    )
    return [server.url]


# -- radix send ------------------------------------------------------------------------------


async def _send(args: argparse.Namespace) -> int:
    address = Address(args.namespace, args.context, args.type, args.id)
    try:
        json.loads(args.body)
    except json.JSONDecodeError as e:
        raise RadixError(
            f'the command is not JSON ({e}); write it like \'{{"type": "CheckIn", "count": 3}}\''
        ) from None
    headers = command_headers(
        args.command_id or uuid.uuid4().hex,
        expected_version=args.expected_version,
        issuer=args.issuer,
        correlation_id=args.correlation_id,
    )
    async with _connected(args) as nc:
        reply = await request_command(
            nc, command_subject(address), args.body.encode(), headers, timeout=args.timeout, attempt_timeout=2.0
        )
    _print(_plain(reply))
    return 0 if reply.status == wire.ACCEPTED else 1


# -- radix tail ------------------------------------------------------------------------------


def intersect(a: str, b: str) -> str | None:
    """The subject filter matching exactly what both NATS subject filters match, or None if nothing does."""
    left, right = a.split("."), b.split(".")
    out: list[str] = []
    for i in range(max(len(left), len(right))):
        x = left[i] if i < len(left) else None
        y = right[i] if i < len(right) else None
        if x == ">" and y is not None:
            return ".".join(out + right[i:])
        if y == ">" and x is not None:
            return ".".join(out + left[i:])
        if x is None or y is None:
            return None
        if x == "*" or x == y:
            out.append(y)
        elif y == "*":
            out.append(x)
        else:
            return None
    return ".".join(out)


def describe(subject: str, data: bytes) -> list[dict[str, Any]]:
    """What a message on a Radix subject says: events of a commit, or a command-log entry."""
    tokens = subject.split(".")
    if len(tokens) < 5 or tokens[0] != PREFIX:
        return []
    where = {"namespace": tokens[1], "context": tokens[2], "aggregate": "/".join(tokens[4:])}
    try:
        if tokens[3] == "evt":
            body = wire.commit_decoder.decode(data)
            return [{"kind": "event", **where, **_plain(e)} for e in body.events]
        if tokens[3] == "log":
            entry = _plain(wire.log_decoder.decode(data))
            entry["subject"] = entry.pop("aggregate", subject)  # the command subject it was sent to
            return [{"kind": "command", **entry, **where}]
    except msgspec.DecodeError:
        return [{"kind": "unreadable", **where, "subject": subject}]
    return []


def _line(item: dict[str, Any]) -> str:
    head = f"{item['namespace']} {item['context']} {item['aggregate']}"
    if item["kind"] == "event":
        data = json.dumps(item["data"], separators=(",", ":"))
        return f"{head} v{item['version']} {item['type']} {data} (command {item['command_id']})"
    if item["kind"] == "command":
        detail = f" v{item['version']}" if item.get("version") is not None else ""
        reason = f": {item['reason']}" if item.get("reason") else ""
        cause = f"command {item['command_id']}, node {item['node']}"
        return f"{head} {item['status']} {item.get('type')}{detail} ({cause}){reason}"
    return f"{head} (a message Radix cannot read on {item['subject']})"


async def _tail(args: argparse.Namespace) -> int:
    shown = 0
    done = asyncio.Event()

    async def show(msg: Msg) -> None:
        nonlocal shown
        for item in describe(msg.subject, msg.data):
            if done.is_set():
                return
            print(json.dumps(item) if args.json else _line(item), flush=True)
            shown += 1
            if args.count and shown >= args.count:
                done.set()

    async with _connected(args) as nc:
        if args.from_start:
            js = nc.jetstream()
            streams = [s for s in await all_streams(js) if s.config.name and s.config.name.startswith(f"{PREFIX}_")]
            for stream in streams:
                for subjects in stream.config.subjects or []:
                    if (filter_subject := intersect(args.pattern, subjects)) is not None:
                        await js.subscribe(
                            filter_subject,
                            cb=show,
                            ordered_consumer=True,
                            deliver_policy=js_api.DeliverPolicy.ALL,
                        )
        else:
            await nc.subscribe(args.pattern, cb=show)
        print(
            f"radix: watching {args.pattern}" + (" from the start" if args.from_start else ""),
            file=sys.stderr,
            flush=True,
        )
        await done.wait()
    return 0


# -- radix status, migrate, drain ------------------------------------------------------------


async def _namespaces(nc: NATS, given: Sequence[str] | None) -> list[str]:
    if given:
        return [validate_namespace(n) for n in given]
    names = await all_streams(nc.jetstream())
    suffix = "_nodes"
    return sorted(
        n.config.name[len(f"KV_{PREFIX}_") : -len(suffix)]
        for n in names
        if n.config.name and n.config.name.startswith(f"KV_{PREFIX}_") and n.config.name.endswith(suffix)
    )


async def _live_nodes(nc: NATS, namespace: str) -> list[str]:
    bucket = KVBucket(nc, nodes_bucket(namespace))
    ready = asyncio.Event()
    found: dict[str, bool] = {}

    async def collect() -> None:
        async for entry in bucket.watch(ready):
            found[entry.key] = entry.value is not None

    watcher = asyncio.create_task(collect())
    try:
        await asyncio.wait_for(ready.wait(), timeout=5)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    return sorted(k for k, live in found.items() if live)


async def _ask(nc: NATS, namespace: str, node: str, verb: str, body: bytes = b"", timeout: float = 2.0) -> Any:
    reply = await nc.request(f"{node_inbox(namespace, node)}.{verb}", body, timeout=timeout)
    return json.loads(reply.data)


async def _status(args: argparse.Namespace) -> int:
    async with _connected(args) as nc:
        report: dict[str, list[dict[str, Any]]] = {}
        for namespace in await _namespaces(nc, args.namespace):
            rows = report.setdefault(namespace, [])
            for node in await _live_nodes(nc, namespace):
                try:
                    rows.append(await _ask(nc, namespace, node, "status"))
                except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
                    rows.append({"node": node, "state": "not answering"})
    if args.json:
        _print(report)
        return 0
    if not report:
        print("no Radix namespaces on this NATS")
    for namespace, rows in report.items():
        print(f"namespace {namespace}: {len(rows)} live node(s)")
        for row in rows:
            if "live_actors" not in row:
                print(f"  {row['node']:<20} {row['state']}")
                continue
            commands = ", ".join(f"{k} {v}" for k, v in sorted(row["commands"].items())) or "none yet"
            print(
                f"  {row['node']:<20} {row['state']:<9} {row['live_actors']:>6} live aggregates  "
                f"{row['rate']:>8.1f} commands/s  ({commands})"
            )
    return 0


def _parse_aggregate(text: str) -> Address:
    parts = text.split("/")
    if len(parts) != 4:
        raise RadixError(f"name the aggregate as NAMESPACE/CONTEXT/TYPE/ID, not {text!r}")
    return Address(*parts)


async def _migrate(args: argparse.Namespace) -> int:
    address = _parse_aggregate(args.aggregate)
    key = args.lease_key or f"{address.context}.{address.aggregate_type}.{address.aggregate_id}"
    async with _connected(args) as nc:
        entry = await KVBucket(nc, leases_bucket(address.namespace)).get(key)
        if entry.value is None:
            print(f"{address} is not live on any node; it is placed where its next command arrives")
            return 1
        owner = msgspec.json.decode(entry.value)["node"]
        request = {
            "context": address.context,
            "aggregate_type": address.aggregate_type,
            "aggregate_id": address.aggregate_id,
            "to": args.to,
        }
        result = await _ask(nc, address.namespace, owner, "migrate", json.dumps(request).encode(), timeout=35)
    _print({"from": owner, **result})
    return 0 if result.get("ok") else 1


async def _drain(args: argparse.Namespace) -> int:
    validate_node_id(args.node)
    namespace = validate_namespace(args.namespace)
    async with _connected(args) as nc:
        try:
            await _ask(nc, namespace, args.node, "drain")
        except nats.errors.NoRespondersError:
            raise RadixError(f"no node {args.node!r} is live in namespace {namespace!r}") from None
        print(f"draining {args.node}...", flush=True)
        for _ in range(int(args.timeout * 4)):
            try:
                status = await _ask(nc, namespace, args.node, "status", timeout=0.5)
                print(f"  {status['state']}: {status['live_actors']} live aggregates left", flush=True)
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
                print(f"{args.node} has handed off its aggregates and left", flush=True)
                return 0
            await asyncio.sleep(0.25)
    print(f"{args.node} is still draining after {args.timeout}s")
    return 1


# -- the parser ------------------------------------------------------------------------------


def _connection_args() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("connection")
    group.add_argument(
        "--nats",
        help="NATS URL(s), comma-separated (default: $RADIX_NATS, the embedded "
        f"server noted in {URL_FILE}, or {DEFAULT_URL})",
    )
    group.add_argument("--user")
    group.add_argument("--password")
    group.add_argument("--token")
    group.add_argument("--creds", type=Path, help="NATS credentials file")
    group.add_argument("--tls-ca", type=Path)
    group.add_argument("--tls-cert", type=Path)
    group.add_argument("--tls-key", type=Path)
    return parent


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="radix", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    conn = _connection_args()

    demo = commands.add_parser(
        "demo", help="run a three-node cluster on an embedded nats-server, through a crash and a drain"
    )
    demo.add_argument("--items", type=int, default=30, help="aggregates (default 30)")
    demo.add_argument("--seconds", type=float, default=9.0, help="seconds of load in all (default 9)")

    node = commands.add_parser("node", parents=[conn], help="run a node (SIGTERM drains it)")
    node.add_argument("--namespace", action="append", required=True, help="namespace to serve (repeatable)")
    node.add_argument(
        "--context", action="append", required=True, help="bounded context as module.path[:attribute] (repeatable)"
    )
    node.add_argument("--node-id", help="this node's id (default: random)")
    node.add_argument("--liveness-ttl", type=int, default=3, help="seconds before a silent node is presumed dead")
    node.add_argument("--idle-timeout", type=float, default=300.0, help="seconds before an idle aggregate passivates")
    node.add_argument(
        "--max-actors", type=int, default=100_000, help="live aggregates past which the least recently used passivate"
    )
    node.add_argument("--snapshot-every", type=int, default=100, help="events between snapshots (0: none)")
    node.add_argument("--rebalance-interval", type=float, default=2.0, help="seconds between rebalancing checks")
    node.add_argument("--replicas", type=int, default=1, choices=(1, 3, 5), help="replicas of streams and buckets")
    node.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port")
    node.add_argument("--metrics-host", default="127.0.0.1", help="address to serve metrics on")
    node.add_argument("--log-json", action="store_true", help="log JSON lines even on a terminal")
    node.add_argument("--log-level", default="info", help="debug, info, warning or error")

    send = commands.add_parser("send", parents=[conn], help="send a command and print the reply")
    send.add_argument("namespace")
    send.add_argument("context")
    send.add_argument("type", help="aggregate type, e.g. InventoryItem")
    send.add_argument("id", help="aggregate id")
    send.add_argument("body", metavar="COMMAND", help='the command as JSON, e.g. \'{"type": "CheckIn", "count": 3}\'')
    send.add_argument("--expected-version", type=int)
    send.add_argument("--issuer")
    send.add_argument("--command-id")
    send.add_argument("--correlation-id")
    send.add_argument("--timeout", type=float, default=10.0)

    tail = commands.add_parser("tail", parents=[conn], help="print events and command-log entries as they happen")
    tail.add_argument(
        "pattern",
        nargs="?",
        default=f"{PREFIX}.>",
        help="NATS subject wildcard, e.g. 'radix.*.inventory.evt.>' (default: everything)",
    )
    tail.add_argument("--from-start", action="store_true", help="replay stored history first")
    tail.add_argument("--json", action="store_true", help="print JSON lines")
    tail.add_argument("--count", type=int, default=0, help="stop after this many items (default: never)")

    status = commands.add_parser("status", parents=[conn], help="live nodes, their aggregates and command rates")
    status.add_argument("--namespace", action="append", help="namespace(s) to show (default: all)")
    status.add_argument("--json", action="store_true", help="print JSON")

    migrate = commands.add_parser("migrate", parents=[conn], help="move a live aggregate to another node")
    migrate.add_argument("aggregate", help="NAMESPACE/CONTEXT/TYPE/ID")
    migrate.add_argument("--to", help="target node id (default: the least loaded)")
    migrate.add_argument("--lease-key", help="the lease key, if the aggregate type overrides placement_key")

    drain = commands.add_parser("drain", parents=[conn], help="hand a node's aggregates to others and stop it")
    drain.add_argument("node")
    drain.add_argument("--namespace", required=True, help="a namespace the node serves")
    drain.add_argument("--timeout", type=float, default=60.0)

    chaos = commands.add_parser(
        "chaos", help="fault-inject a 3-server NATS cluster and Radix nodes; check the recorded history"
    )
    chaos.add_argument("--seed", type=int, help="replay this seed (default: a random one, printed)")
    chaos.add_argument("--soak", type=float, metavar="SECONDS", help="run fresh seeds until this many seconds pass")
    chaos.add_argument("--faults", type=int, default=12, help="faults per run (default 12)")
    chaos.add_argument("--kinds", help=f"comma-separated fault kinds among {', '.join(FAULT_KINDS)} (default: all)")
    chaos.add_argument("--mutation", choices=MUTATIONS, help="run a test build with this deliberate bug")
    chaos.add_argument("--nodes", type=int, default=3, help="Radix node processes (default 3)")
    chaos.add_argument("--aim-at-owners", action="store_true", help="node faults hit the node holding the most leases")
    chaos.add_argument("--out", type=Path, default=Path("chaos-out"), help="folder for histories and logs")
    chaos.set_defaults(log_level="error")  # the harness reports progress itself; reconnects are expected

    bench = commands.add_parser("bench", help="measure Radix against raw JetStream, side by side")
    bench.add_argument("--nats", help="NATS URL (default: an embedded nats-server)")
    bench.add_argument("--quick", action="store_true", help="small sizes, one run (for CI)")
    bench.add_argument("--runs", type=int, help="repetitions per scenario; medians are reported (default 3)")
    bench.add_argument("--only", help=f"comma-separated scenarios among {', '.join(SCENARIOS)}")
    bench.add_argument("--json", action="store_true", help="print a JSON list, one object per scenario")
    return parser


async def _bench(args: argparse.Namespace) -> int:
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


async def _chaos(args: argparse.Namespace) -> int:
    kinds = tuple(k for k in (args.kinds or "").split(",") if k) or FAULT_KINDS
    unknown = set(kinds) - set(FAULT_KINDS)
    if unknown:
        raise RadixError(f"unknown fault kind(s) {', '.join(sorted(unknown))}: choose from {', '.join(FAULT_KINDS)}")
    seed = args.seed if args.seed is not None else random.randrange(1, 2**31)
    try:
        spec = ChaosSpec(
            seed=seed,
            kinds=kinds,
            faults=args.faults,
            mutation=args.mutation,
            nodes=args.nodes,
            aim_at_owners=args.aim_at_owners,
        )
    except ValueError as e:
        raise RadixError(str(e)) from None

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


_COMMANDS = {
    "bench": _bench,
    "chaos": _chaos,
    "node": _node,
    "send": _send,
    "tail": _tail,
    "status": _status,
    "migrate": _migrate,
    "drain": _drain,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `radix` command line; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            configure_logging(level="warning")
            return uvloop.run(run_demo(items=args.items, seconds=args.seconds))
        configure_logging(
            json=True if getattr(args, "log_json", False) else None, level=getattr(args, "log_level", "warning")
        )
        return uvloop.run(_COMMANDS[args.command](args))
    except RadixError as e:
        print(f"radix: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
