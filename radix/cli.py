"""The `radix` command line."""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
import uuid
from collections.abc import Sequence

import nats
import uvloop

from radix.domain import AggregateCodec
from radix.errors import DomainError, RadixError, VersionConflictError
from radix.examples.inventory import CheckIn, CreateItem, InventoryItemCommand, ItemState, Remove, inventory
from radix.names import Address
from radix.server import EmbeddedNats
from radix.store import JetStreamEventStore

__all__ = ["main"]


async def _load(store: JetStreamEventStore, codec: AggregateCodec, address: Address) -> tuple[ItemState, int]:
    aggregate = codec.aggregate
    state: ItemState = aggregate.initial_state()
    version = 0
    for commit in await store.read(address):
        for recorded in commit.events:
            state = aggregate.evolve(state, codec.decode_event(recorded.type, recorded.schema, recorded.data))
            version = recorded.version
    return state, version


async def _execute(
    store: JetStreamEventStore, codec: AggregateCodec, address: Address, command: InventoryItemCommand
) -> tuple[str, int]:
    """Decide and append one command, reloading on a version conflict; return (outcome, conflicts seen)."""
    command_id = uuid.uuid4().hex
    for attempt in range(20):
        state, version = await _load(store, codec, address)
        try:
            events = codec.aggregate.decide(state, command)
        except DomainError:
            return "rejected", attempt
        try:
            await store.append(
                address,
                [codec.encode_event(e) for e in events],
                expected_version=version,
                command_id=command_id,
                issuer="radix-demo",
            )
        except VersionConflictError:
            continue
        return "accepted", attempt
    return "gave up", 20


async def _demo(items: int, commands: int, writers: int, seed: int) -> int:
    rng = random.Random(seed)
    print(f"radix demo (seed {seed}): the inventory example on an embedded nats-server")
    started = time.perf_counter()
    async with EmbeddedNats() as server:
        print(f"  nats-server with JetStream at {server.url} (data in a temporary directory)")
        nc = await nats.connect(server.url)
        async with JetStreamEventStore(nc) as store:
            codec = inventory.codec("InventoryItem")
            addresses = [Address("demo", "inventory", "InventoryItem", f"sku-{i}") for i in range(items)]
            await asyncio.gather(*(_execute(store, codec, a, CreateItem(name=a.aggregate_id)) for a in addresses))
            print(f"  created {items} items")
            outcomes: dict[str, int] = {}
            conflicts = 0
            queue: asyncio.Queue[tuple[Address, InventoryItemCommand]] = asyncio.Queue()
            for _ in range(commands):
                address = rng.choice(addresses[: max(1, items // 4)])  # a hot quarter, so writers race
                count = rng.randint(1, 5)
                queue.put_nowait((address, CheckIn(count=count) if rng.random() < 0.6 else Remove(count=count)))

            async def writer() -> None:
                nonlocal conflicts
                while not queue.empty():
                    address, command = queue.get_nowait()
                    outcome, seen = await _execute(store, codec, address, command)
                    outcomes[outcome] = outcomes.get(outcome, 0) + 1
                    conflicts += seen
                    done = sum(outcomes.values())
                    if done % max(1, commands // 5) == 0:
                        print(f"  {done}/{commands} commands done")

            await asyncio.gather(*(writer() for _ in range(writers)))
            print(f"  {writers} concurrent writers: {outcomes}; {conflicts} version conflicts reloaded and retried")
            total_events = 0
            for address in addresses:
                commits = await store.read(address)
                versions = [e.version for c in commits for e in c.events]
                if versions != list(range(1, len(versions) + 1)):
                    print(f"  FAILED: {address} has versions {versions}")
                    return 1
                total_events += len(versions)
                state, _ = await _load(store, codec, address)
                if state.count < 0:
                    print(f"  FAILED: {address} has negative stock {state.count}")
                    return 1
        await nc.close()
    print(
        f"  verified: {total_events} events in {items} aggregates, versions contiguous, no stock below zero "
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
