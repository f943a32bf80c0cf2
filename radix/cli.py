"""The `radix` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import uvloop

from radix.client import Client
from radix.connection import ConnectOptions, connect
from radix.domain import BoundedContext
from radix.errors import CommandRejectedError, RadixError
from radix.examples.inventory import CheckIn, CreateItem, Remove, inventory
from radix.logs import configure_logging, logger
from radix.names import Address
from radix.runtime import Node, NodeConfig
from radix.server import EmbeddedNats
from radix.store import JetStreamEventStore, StoreConfig

__all__ = ["main"]


async def _demo(items: int, commands: int, writers: int, seed: int) -> int:
    rng = random.Random(seed)
    print(f"radix demo (seed {seed}): the inventory example on an embedded nats-server")
    started = time.perf_counter()
    async with EmbeddedNats() as server:
        print(f"  nats-server with JetStream at {server.url} (data in a temporary directory)")
        options = ConnectOptions(servers=[server.url])
        async with Node({"demo": [inventory]}, nats=options, config=NodeConfig(node_id="demo-1")) as node:
            print(f"  node {node.node_id} serving radix.demo.inventory.cmd.>")
            nc = await connect(options, name="radix demo client")
            client = Client(nc, inventory, namespace="demo")
            ids = [f"sku-{i}" for i in range(items)]
            await asyncio.gather(*(client.send(CreateItem(name=i), aggregate_id=i) for i in ids))
            print(f"  created {items} items")
            outcomes: Counter[str] = Counter()
            plan = [(rng.choice(ids), rng.randint(1, 5), rng.random() < 0.6) for _ in range(commands)]

            async def writer(share: list[tuple[str, int, bool]]) -> None:
                for aggregate_id, count, check_in in share:
                    command = CheckIn(count=count) if check_in else Remove(count=count)
                    try:
                        await client.send(command, aggregate_id=aggregate_id)
                        outcomes["accepted"] += 1
                    except CommandRejectedError:
                        outcomes["rejected"] += 1
                    if sum(outcomes.values()) % max(1, commands // 5) == 0:
                        print(f"  {sum(outcomes.values())}/{commands} commands answered")

            await asyncio.gather(*(writer(plan[w::writers]) for w in range(writers)))
            print(f"  {writers} concurrent writers: {dict(outcomes)} (a removal beyond the stock is rejected)")
            await nc.close()
        async with JetStreamEventStore(nc := await connect(options, name="radix demo check")) as store:
            total_events = 0
            for aggregate_id in ids:
                commits = await store.read(Address("demo", "inventory", "InventoryItem", aggregate_id))
                versions = [e.version for c in commits for e in c.events]
                if versions != list(range(1, len(versions) + 1)):
                    print(f"  FAILED: {aggregate_id} has versions {versions}")
                    return 1
                total_events += len(versions)
        await nc.close()
    if total_events != items + outcomes["accepted"]:
        print(f"  FAILED: {total_events} events stored for {items + outcomes['accepted']} accepted commands")
        return 1
    print(
        f"  verified: {total_events} events in {items} aggregates, one per accepted command, versions contiguous "
        f"({time.perf_counter() - started:.1f}s)"
    )
    return 0


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


def _connect_options(args: argparse.Namespace, servers: Sequence[str]) -> ConnectOptions:
    return ConnectOptions(
        servers=tuple(servers),
        user=args.user,
        password=args.password,
        token=args.token,
        credentials=args.creds,
        tls_ca=args.tls_ca,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
    )


async def _node(args: argparse.Namespace) -> int:
    contexts = [load_context(spec) for spec in args.context]
    hosts = dict.fromkeys(args.namespace, contexts)
    config = NodeConfig(
        **({"node_id": args.node_id} if args.node_id else {}),
        liveness_ttl=args.liveness_ttl,
        idle_timeout=args.idle_timeout,
        snapshot_every=args.snapshot_every,
        rebalance_interval=args.rebalance_interval,
        store=StoreConfig(replicas=args.replicas),
    )
    async with contextlib.AsyncExitStack() as stack:
        servers = [u for u in (args.nats or "").split(",") if u]
        if not servers:
            data = Path(".radix") / "nats"
            data.mkdir(parents=True, exist_ok=True)
            server = await stack.enter_async_context(EmbeddedNats(store_dir=data.resolve()))
            servers = [server.url]
            print(
                f"radix: no --nats given: started an embedded nats-server at {server.url} (data in {data})",
                file=sys.stderr,
                flush=True,
            )
        node = Node(hosts, nats=_connect_options(args, servers), config=config)
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
        print(f"radix: node {node.node_id} serving {', '.join(node.status().hosts)}", file=sys.stderr, flush=True)
        await node.wait_stopped()
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="radix", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser("demo", help="run the inventory example on an embedded nats-server")
    demo.add_argument("--items", type=int, default=40, help="aggregates to create (default 40)")
    demo.add_argument("--commands", type=int, default=400, help="commands to send (default 400)")
    demo.add_argument("--writers", type=int, default=16, help="concurrent writers (default 16)")
    demo.add_argument("--seed", type=int, default=None, help="random seed (default: random, printed)")

    node = commands.add_parser("node", help="run a node hosting contexts in namespaces (SIGTERM drains it)")
    node.add_argument("--nats", help="NATS URL(s), comma-separated (default: start an embedded nats-server)")
    node.add_argument("--namespace", action="append", required=True, help="namespace to serve (repeatable)")
    node.add_argument(
        "--context", action="append", required=True, help="bounded context as module.path[:attribute] (repeatable)"
    )
    node.add_argument("--node-id", help="this node's id (default: random)")
    node.add_argument("--liveness-ttl", type=int, default=3, help="seconds before a silent node is presumed dead")
    node.add_argument("--idle-timeout", type=float, default=300.0, help="seconds before an idle aggregate passivates")
    node.add_argument("--snapshot-every", type=int, default=100, help="events between snapshots (0: none)")
    node.add_argument("--rebalance-interval", type=float, default=2.0, help="seconds between rebalancing checks")
    node.add_argument("--replicas", type=int, default=1, choices=(1, 3, 5), help="replicas of streams and buckets")
    node.add_argument("--log-json", action="store_true", help="log JSON lines even on a terminal")
    node.add_argument("--log-level", default="info", help="debug, info, warning or error")
    auth = node.add_argument_group("connection")
    auth.add_argument("--user")
    auth.add_argument("--password")
    auth.add_argument("--token")
    auth.add_argument("--creds", type=Path, help="NATS credentials file")
    auth.add_argument("--tls-ca", type=Path)
    auth.add_argument("--tls-cert", type=Path)
    auth.add_argument("--tls-key", type=Path)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `radix` command line; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            configure_logging(level="warning")
            seed = args.seed if args.seed is not None else random.randrange(1_000_000)
            return uvloop.run(_demo(args.items, args.commands, args.writers, seed))
        if args.command == "node":
            configure_logging(json=True if args.log_json else None, level=args.log_level)
            return uvloop.run(_node(args))
    except RadixError as e:
        print(f"radix: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
