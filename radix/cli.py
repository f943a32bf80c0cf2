"""The `radix` command line."""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections import Counter
from collections.abc import Sequence

import uvloop

from radix.client import Client
from radix.connection import ConnectOptions, connect
from radix.errors import CommandRejectedError, RadixError
from radix.examples.inventory import CheckIn, CreateItem, Remove, inventory
from radix.logs import configure_logging
from radix.names import Address
from radix.runtime import Node, NodeConfig
from radix.server import EmbeddedNats
from radix.store import JetStreamEventStore

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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="radix", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser("demo", help="run the inventory example on an embedded nats-server")
    demo.add_argument("--items", type=int, default=40, help="aggregates to create (default 40)")
    demo.add_argument("--commands", type=int, default=400, help="commands to send (default 400)")
    demo.add_argument("--writers", type=int, default=16, help="concurrent writers (default 16)")
    demo.add_argument("--seed", type=int, default=None, help="random seed (default: random, printed)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `radix` command line; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            configure_logging(level="warning")
            seed = args.seed if args.seed is not None else random.randrange(1_000_000)
            return uvloop.run(_demo(args.items, args.commands, args.writers, seed))
    except RadixError as e:
        print(f"radix: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
