"""`radix status`, `radix migrate` and `radix drain`: what the live nodes are doing, and steering them."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import nats.errors
from nats.aio.client import Client as NATS
from nats.js import errors as js_errors

from radix import wire
from radix.cli.common import connected, left, namespaces, print_json
from radix.errors import RadixError
from radix.observability.logs import logged
from radix.store.kv import KVBucket
from radix.store.placement import owner_of
from radix.wire.names import (
    DRAIN,
    MIGRATE,
    STATUS,
    Address,
    default_placement_key,
    node_subject,
    nodes_bucket,
    validate_namespace,
    validate_node_id,
)

__all__ = ["drain", "migrate", "status", "statuses"]


async def _live_nodes(nc: NATS, namespace: str, timeout: float) -> list[str]:
    bucket = KVBucket(nc, nodes_bucket(namespace))
    try:
        await nc.jetstream().stream_info(bucket.stream)
    except js_errors.NotFoundError:
        raise RadixError(f"no Radix namespace {namespace!r} on this NATS: no node ever served it") from None
    ready = asyncio.Event()
    found: dict[str, bool] = {}

    async def collect() -> None:
        async for entry in bucket.watch(ready):
            found[entry.key] = entry.value is not None

    async with asyncio.TaskGroup() as group:
        watcher = group.create_task(logged(collect(), "watching the nodes failed"))
        try:
            await asyncio.wait_for(ready.wait(), timeout=timeout)
        except TimeoutError:
            raise RadixError(f"the nodes of namespace {namespace!r} could not be listed within {timeout:g}s") from None
        finally:
            watcher.cancel()
    return sorted(k for k, live in found.items() if live)


async def _ask(nc: NATS, namespace: str, node: str, verb: str, body: bytes = b"", timeout: float = 2.0) -> Any:
    reply = await nc.request(node_subject(namespace, node, verb), body, timeout=timeout)
    return json.loads(reply.data)


async def statuses(nc: NATS, namespace: str, deadline: float) -> list[dict[str, Any]]:
    """What every live node of the namespace says of itself (`state` "not answering" for one that does not)."""
    rows = []
    for node in await _live_nodes(nc, namespace, left(deadline)):
        try:
            rows.append(await _ask(nc, namespace, node, STATUS, timeout=min(2.0, left(deadline))))
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
            rows.append({"node": node, "state": "not answering"})
    return rows


async def status(args: argparse.Namespace) -> int:
    deadline = time.monotonic() + args.timeout
    async with connected(args) as nc:
        report = {ns: await statuses(nc, ns, deadline) for ns in await namespaces(nc, args.namespace)}
    if args.json:
        print_json(report)
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
            shards = row.get("shards", {})
            if shards:
                print("    shards: " + ", ".join(f"{label} {count}" for label, count in sorted(shards.items())))
            for p in row.get("processors", []):
                print(
                    f"    {p['kind']} {p['context']}/{p['name']} partition {p['partition']}: at {p['position']}, "
                    f"lag {p['lag']}, {p['handled']} handled, {p['parked']} parked"
                )
    return 0


def _parse_aggregate(text: str) -> Address:
    parts = text.split("/")
    if len(parts) != 4:
        raise RadixError(f"name the aggregate as NAMESPACE/CONTEXT/TYPE/ID, not {text!r}")
    return Address(*parts)


async def migrate(args: argparse.Namespace) -> int:
    address = _parse_aggregate(args.aggregate)
    placement_key = args.lease_key or default_placement_key(address.aggregate_type, address.aggregate_id)
    deadline = time.monotonic() + args.timeout
    async with connected(args) as nc:
        shard, owner = await owner_of(nc, address.namespace, address.context, placement_key)
        if owner is None:
            print(f"{address} is in a shard no node holds; it is placed where its next command arrives")
            return 1
        request = wire.MigrateRequest(address.context, address.aggregate_type, address.aggregate_id, args.to)
        body = wire.control_encoder.encode(request)
        try:
            result = await _ask(nc, address.namespace, owner, MIGRATE, body, timeout=left(deadline))
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
            raise RadixError(f"{owner}, the owner of {address}, did not answer within {args.timeout:g}s") from None
    print_json({"from": owner, "shard": shard, **result})
    return 0 if result.get("ok") else 1


async def drain(args: argparse.Namespace) -> int:
    validate_node_id(args.node)
    namespace = validate_namespace(args.namespace)
    deadline = time.monotonic() + args.timeout
    async with connected(args) as nc:
        try:
            await _ask(nc, namespace, args.node, DRAIN, timeout=min(2.0, left(deadline)))
        except nats.errors.NoRespondersError:
            raise RadixError(f"no node {args.node!r} is live in namespace {namespace!r}") from None
        except nats.errors.TimeoutError:
            raise RadixError(f"node {args.node!r} did not answer the request to drain") from None
        print(f"draining {args.node}...", flush=True)
        while time.monotonic() < deadline:
            try:
                status = await _ask(nc, namespace, args.node, STATUS, timeout=min(0.5, left(deadline)))
                print(f"  {status['state']}: {status['live_actors']} live aggregates left", flush=True)
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
                print(f"{args.node} has handed off its aggregates and left", flush=True)
                return 0
            await asyncio.sleep(0.25)
    print(f"{args.node} is still draining after {args.timeout}s")
    return 1
