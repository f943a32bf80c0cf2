"""`radix reaction|projection parked|retry|skip NAME`: the events a reaction or projection parked (those it
gave up on after its attempts), trying them again once the cause is fixed, or skipping them.

The partition's owner tries marked events again in order within a second or two, and lets their
aggregate go on once none of its events is parked (docs/reactions-and-projections.md).
"""

from __future__ import annotations

import argparse
import time

import msgspec

from radix.cli.common import connected, left, print_json
from radix.store.parked import Parked, ParkedStore
from radix.wire.names import validate_context, validate_namespace, validate_processor

__all__ = ["run"]


async def run(args: argparse.Namespace) -> int:
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
