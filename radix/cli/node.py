"""`radix node`: run a node until SIGTERM (which drains it) or a second signal (which stops it at once)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time

from radix.cli.common import URL_FILE, given_servers, load_context, options
from radix.cli.server import DATA_DIR, serving_here
from radix.errors import RadixError
from radix.observability.logs import logger
from radix.runtime import ActorConfig, MetricsConfig, Node, NodeConfig, NodeState, PlacementConfig, tune_gc
from radix.runtime.config import ProcessingConfig
from radix.store import StoreConfig
from radix.transport.server import EmbeddedNats

__all__ = ["run"]


def config_of(args: argparse.Namespace) -> NodeConfig:
    """The node's configuration from its command line."""
    return NodeConfig(
        **({"node_id": args.node_id} if args.node_id else {}),
        actors=ActorConfig(
            idle_timeout=args.idle_timeout, max_actors=args.max_actors, snapshot_every=args.snapshot_every
        ),
        placement=PlacementConfig(
            liveness_ttl=args.liveness_ttl, rebalance_interval=args.rebalance_interval, shards=args.shards
        ),
        store=StoreConfig(replicas=args.replicas),
        metrics=MetricsConfig(port=args.metrics_port, host=args.metrics_host),
        processing=ProcessingConfig(partitions=args.partitions),
        strict=args.strict,
        server_monitor=args.server_monitor,
    )


async def run(args: argparse.Namespace) -> int:
    contexts = [load_context(spec) for spec in args.context]
    config = config_of(args)
    if args.processes < 1:
        raise RadixError(f"--processes must be 1 or more, not {args.processes}")
    async with contextlib.AsyncExitStack() as stack:
        urls = given_servers(args) or await _embedded(stack)
        if args.processes > 1:
            return await _several(args, urls, config.node_id)
        node = Node(dict.fromkeys(args.namespace, contexts), nats=options(args, urls), config=config)
        loop = asyncio.get_running_loop()
        signals = 0

        def on_signal() -> None:
            nonlocal signals
            signals += 1
            if signals == 1:
                logger.info("signal received: draining (send it again to stop at once)")
                node.request_drain()
            else:
                node.request_stop()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        await node.start()
        if node.state is not NodeState.RUNNING:  # stopped by a signal while it was still starting
            return 0
        tune_gc()
        print(f"radix: node {node.node_id} serving {', '.join(node.status().hosts)}", file=sys.stderr, flush=True)
        await node.wait_stopped()
    if node.failure is not None:
        print(f"radix: node {node.node_id} stopped: {node.failure}; start it again", file=sys.stderr, flush=True)
        return 1
    return 0


async def _several(args: argparse.Namespace, urls: list[str], node_id: str) -> int:
    """`--processes N`: N `radix node` processes with these arguments, as one unit.

    A CPython process runs Radix on one core; N of them use N. They are N nodes of the cluster
    (`{id}-1` .. `{id}-N`), in one queue group, each holding its own aggregates, exactly as if they had
    been started one by one. This process starts them and ends when all have ended (0 if every one
    ended well). A first SIGTERM or SIGINT drains them one after another, the last first: drained at
    once, each would hand aggregates to a sibling that is itself stopping. A second signal stops those
    left at once. A process that exits while the unit is not stopping is started again a second later
    if it had run for `_SETTLED` seconds; else the unit stops (a process that cannot start would fail
    again).
    """
    count = args.processes
    children: dict[int, asyncio.subprocess.Process] = {}
    signalled = dict.fromkeys(range(1, count + 1), 0)  # signals sent to each process since it started
    stopping = False  # a first signal: drain
    at_once = False  # a second: stop
    draining: asyncio.Task[None] | None = None
    loop = asyncio.get_running_loop()

    def tell(k: int, times: int = 1) -> None:
        child = children.get(k)
        while child is not None and child.returncode is None and signalled[k] < times:
            child.send_signal(signal.SIGTERM)  # a node drains on its first signal, stops on its second
            signalled[k] += 1

    async def drain() -> None:
        for k in range(count, 0, -1):
            tell(k)
            if (child := children.get(k)) is not None:
                await child.wait()

    def on_signal() -> None:
        nonlocal stopping, at_once, draining
        if not stopping:
            stopping = True
            draining = loop.create_task(drain())
            return
        at_once = True
        for k in children:
            tell(k, 2)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)

    async def keep(k: int) -> int:
        argv = child_argv(args.argv, node_id=f"{node_id}-{k}", urls=urls, metrics_port=args.metrics_port, k=k)
        code = 0
        while not stopping:
            started = time.monotonic()
            # A session of its own: a terminal's Ctrl-C reaches this process alone, which drains in order.
            child = await asyncio.create_subprocess_exec(sys.executable, "-m", "radix", *argv, start_new_session=True)
            children[k], signalled[k] = child, 0
            if stopping:  # a signal came while it was starting
                tell(k, 2 if at_once else 1)
            code = await child.wait()
            if stopping:
                return code
            if time.monotonic() - started < _SETTLED:
                logger.error("node process exited as it started: stopping the others", node=f"{node_id}-{k}")
                on_signal()
                return code or 1
            logger.warning("node process exited: starting it again", node=f"{node_id}-{k}", code=code)
            await asyncio.sleep(1.0)
        return code

    print(f"radix: running {count} node processes ({node_id}-1 .. {node_id}-{count})", file=sys.stderr, flush=True)
    codes = await asyncio.gather(*(keep(k) for k in range(1, count + 1)))
    if draining is not None:
        await draining
    return 0 if all(code == 0 for code in codes) else 1


#: Seconds a process of `--processes` must have run to be started again when it exits.
_SETTLED = 10.0


def child_argv(argv: list[str], *, node_id: str, urls: list[str], metrics_port: int | None, k: int) -> list[str]:
    """The arguments of one process of `radix node --processes N`: these, for one node, on `urls`."""
    dropped = {"--processes", "--node-id", "--nats", "--metrics-port"}
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in dropped:
            skip = True
        elif not any(arg.startswith(f"{flag}=") for flag in dropped):
            out.append(arg)
    out += ["--processes", "1", "--node-id", node_id, "--nats", ",".join(urls)]  # 1: whatever argparse took
    if metrics_port is not None:
        out += ["--metrics-port", str(metrics_port + k - 1 if metrics_port else 0)]  # 0: any free port
    return out


async def _embedded(stack: contextlib.AsyncExitStack) -> list[str]:
    """The URL of the nats-server noted for this directory (`radix server`'s, or another node's own), or of
    one started inside this process, which stops with it."""
    if (url := await serving_here()) is not None:
        print(f"radix: using the nats-server at {url} (noted in {URL_FILE})", file=sys.stderr, flush=True)
        return [url]
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    server = await stack.enter_async_context(EmbeddedNats(store_dir=DATA_DIR.resolve()))
    URL_FILE.write_text(server.url + "\n")
    stack.callback(URL_FILE.unlink, missing_ok=True)
    print(
        f"radix: no --nats given and no server noted in {URL_FILE}: started a nats-server at {server.url} inside "
        f"this node (data in {DATA_DIR}/); it stops with this node: for a cluster, run `radix server` first",
        file=sys.stderr,
        flush=True,
    )
    return [server.url]
