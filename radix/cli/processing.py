"""`radix reaction|projection parked|retry|skip NAME`: the events a reaction or projection parked (those it
gave up on after its attempts), trying them again once the cause is fixed, or skipping them; and
`radix projection reset|rebuild NAME`: its read model dropped and built again from the feed's start.

The partition's owner tries marked events again in order within a second or two, and lets their
aggregate go on once none of its events is parked. A reset pauses the projection on every node
(they let its partitions go and claim none), waits until no node holds one, drops the view and its
checkpoints (with the projection's own code: `--code`), its consumers and parked events, and lets
the nodes claim it again, from the start; a rebuild then shows progress until it has caught up
(docs/reactions-and-projections.md).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time

import msgspec
from nats.aio.client import Client as NATS

from radix.cli.cluster import statuses
from radix.cli.common import connected, left, load_context, print_json
from radix.errors import RadixError
from radix.store.kv import KVBucket
from radix.store.parked import Parked, ParkedStore
from radix.store.views import open_view
from radix.testing.conditions import eventually
from radix.wire.names import (
    feed_stream,
    leases_bucket,
    processor_consumer_prefix,
    processor_lease_key,
    validate_context,
    validate_namespace,
    validate_processor,
)

__all__ = ["run"]


async def run(args: argparse.Namespace) -> int:
    if args.action in ("reset", "rebuild"):
        return await reset(args)
    namespace, context = validate_namespace(args.namespace), validate_context(args.context)
    name = validate_processor(args.name)
    deadline = time.monotonic() + args.timeout
    async with connected(args) as nc:
        store = ParkedStore(nc, timeout=left(deadline))
        parked = [
            p
            for p in await store.of(namespace, context, name)
            if args.aggregate is None or p.aggregate == args.aggregate
        ]
        if args.action in ("retry", "skip"):
            await store.mark(namespace, parked, retry=args.action == "retry")
        await store.close()
    return _show(args, parked)


def _show(args: argparse.Namespace, parked: list[Parked]) -> int:
    if args.json:
        print_json({"action": args.action, "parked": [msgspec.to_builtins(p) for p in parked]})
        return 0
    verb = {"parked": "parked", "retry": "to be tried again", "skip": "skipped"}[args.action]
    print(f"{args.command} {args.name} of {args.namespace}/{args.context}: {len(parked)} event(s) {verb}")
    for p in parked:
        why = f"behind {p.behind}" if p.behind else f"{p.error} (after {p.attempts} attempt(s))"
        print(f"  {p.aggregate} v{p.version} {p.type} at feed position {p.position}, partition {p.partition}: {why}")
    return 0


async def reset(args: argparse.Namespace) -> int:
    namespace, name = validate_namespace(args.namespace), validate_processor(args.name)
    context = load_context(args.code)
    projection = next((p for p in context.projections if p.name == name), None)
    if projection is None:
        names = ", ".join(p.name for p in context.projections) or "none"
        raise RadixError(f"{args.code} declares no projection {name!r} (it declares {names})")
    deadline = time.monotonic() + args.timeout
    async with connected(args) as nc:
        parked = ParkedStore(nc, timeout=left(deadline))
        await parked.pause(namespace, context.name, name)
        try:
            await _let_go_everywhere(nc, namespace, context.name, name, deadline)
            view = await open_view(projection.into, namespace, context.name, name, nc)
            await view.reset()
            await view.close()
            await _remove_consumers(nc, namespace, context.name, name)
            await parked.mark(namespace, await parked.of(namespace, context.name, name), retry=False)
        finally:
            await parked.resume(namespace, context.name, name)
        print(
            f"radix: projection {name} of {namespace}/{context.name} reset: it is built again from the start",
            file=sys.stderr,
            flush=True,
        )
        handled = None
        if args.action == "rebuild":
            handled = await _follow(nc, namespace, context.name, name, deadline)
            print(f"radix: projection {name} rebuilt: {handled} events applied", file=sys.stderr, flush=True)
        await parked.close()
    if args.json:
        print_json({"action": args.action, "projection": name, "context": context.name, "applied": handled})
    return 0


async def _let_go_everywhere(nc: NATS, namespace: str, context: str, name: str, deadline: float) -> None:
    """Wait until no node holds a partition of the projection (each lets go once it sees the pause)."""
    leases = KVBucket(nc, leases_bucket(namespace))
    prefix = processor_lease_key(context, name, 0).rpartition(".")[0] + "."

    async def none_held() -> bool:
        return not [e for e in await leases.entries(timeout=left(deadline)) if e.key.startswith(prefix)]

    try:
        await eventually(none_held, timeout=left(deadline), what="every node letting the projection go")
    except TimeoutError:
        raise RadixError(
            f"the nodes did not let projection {name} go within the --timeout; it is left paused no longer, "
            "and nothing was reset: try again"
        ) from None


async def _remove_consumers(nc: NATS, namespace: str, context: str, name: str) -> None:
    js, stream = nc.jetstream(), feed_stream(namespace, context)
    prefix = processor_consumer_prefix(name, 0).rpartition("-p")[0] + "-p"
    for consumer in await js.consumers_info(stream):
        if (consumer.name or "").startswith(prefix):
            await js.delete_consumer(stream, consumer.name or "")


async def _follow(nc: NATS, namespace: str, context: str, name: str, deadline: float) -> int:
    """Show the rebuild's progress every two seconds until every partition is owned again with no lag."""
    info = await nc.jetstream().stream_info(feed_stream(namespace, context))
    total = int(info.state.messages)
    dest = next((t.dest for src in info.config.sources or [] for t in src.subject_transforms or []), "")
    found = re.search(r"partition\((\d+),", dest or "")
    partitions = int(found.group(1)) if found else 1
    while True:
        rows = [
            p
            for node in await statuses(nc, namespace, time.monotonic() + 5)
            for p in node.get("processors", [])
            if p["context"] == context and p["name"] == name
        ]
        handled = sum(int(p["handled"]) for p in rows)
        lag = sum(int(p["lag"]) for p in rows)
        if len({p["partition"] for p in rows}) == partitions and lag == 0:
            return handled
        print(
            f"radix: rebuilding {name}: {handled} events applied, {lag} behind, "
            f"{len(rows)} of {partitions} partitions owned (the feed holds {total})",
            file=sys.stderr,
            flush=True,
        )
        if time.monotonic() > deadline:
            raise RadixError(
                f"the rebuild of {name} has not caught up within the --timeout; it goes on: see radix status"
            )
        await asyncio.sleep(2.0)
