"""`radix node`: run a node until SIGTERM (which drains it) or a second signal (which stops it at once)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from radix.cli.common import URL_FILE, given_servers, load_context, options
from radix.cli.server import DATA_DIR, serving_here
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
        placement=PlacementConfig(liveness_ttl=args.liveness_ttl, rebalance_interval=args.rebalance_interval),
        store=StoreConfig(replicas=args.replicas),
        metrics=MetricsConfig(port=args.metrics_port, host=args.metrics_host),
        processing=ProcessingConfig(partitions=args.partitions),
        strict=args.strict,
        server_monitor=args.server_monitor,
    )


async def run(args: argparse.Namespace) -> int:
    contexts = [load_context(spec) for spec in args.context]
    config = config_of(args)
    async with contextlib.AsyncExitStack() as stack:
        urls = given_servers(args) or await _embedded(stack)
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
