"""`radix schemas list|check|scan`: what the schema registry holds, whether code fits it, and which event
versions the stored histories hold (docs/evolving-events.md).

`check` is for a deployment pipeline: exit 0 if the code given would start against the registry and
read every version registered, else 1 with each difference. `scan` reads every events stream of a
namespace once, with progress on stderr; given code, it names each aggregate that code could not serve.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import nats.errors
from nats.aio.client import Client as NATS
from nats.js import api as js_api
from nats.js import errors as js_errors

from radix import wire
from radix.cli.common import connected, left, load_context, namespaces, print_json
from radix.domain import BoundedContext
from radix.domain.schemas import EventSchema, problems, schemas_of, unreadable
from radix.errors import RadixError
from radix.store.kv import KVBucket
from radix.store.schemas import selected
from radix.store.streams import all_streams
from radix.wire.names import EVENTS, context_filter, context_of_events_stream, parse_stored_subject, schemas_bucket

__all__ = ["run"]

#: How many of the aggregates holding a version a scan names.
_EXAMPLES = 3


async def run(args: argparse.Namespace) -> int:
    action = {"list": list_schemas, "check": check, "scan": scan}[args.action]
    return await action(args)


async def registered(nc: NATS, namespace: str, timeout: float) -> list[EventSchema]:
    """The namespace's registered schemas (none if no node ever registered any); creates nothing."""
    bucket = KVBucket(nc, schemas_bucket(namespace), timeout=timeout)
    try:
        entries = await bucket.entries(timeout=timeout)
    except js_errors.NotFoundError:
        return []
    return selected((e.value for e in entries if e.value is not None), None)


def _row(schema: EventSchema) -> dict[str, Any]:
    return {
        "context": schema.context,
        "type": schema.type_name,
        "version": schema.version,
        "hash": schema.hash,
        "node": schema.node,
        "at": schema.at,
    }


async def list_schemas(args: argparse.Namespace) -> int:
    deadline = time.monotonic() + args.timeout
    async with connected(args) as nc:
        report = {ns: await registered(nc, ns, left(deadline)) for ns in await namespaces(nc, args.namespace)}
    if args.json:
        print_json({ns: [_row(s) for s in found] for ns, found in report.items()})
        return 0
    if not report:
        print("no Radix namespaces on this NATS")
    for namespace, found in report.items():
        print(f"namespace {namespace}: {len(found)} event schema version(s)")
        for s in found:
            print(f"  {s.context:<16} {s.type_name:<24} {s.version:<6} {s.hash}  by {s.node or '?'} at {s.at or '?'}")
    return 0


async def check(args: argparse.Namespace) -> int:
    contexts = [load_context(spec) for spec in args.code]
    deadline = time.monotonic() + args.timeout
    report: dict[str, dict[str, Any]] = {}
    async with connected(args) as nc:
        for namespace in await namespaces(nc, args.namespace):
            found = await registered(nc, namespace, left(deadline))
            for context in contexts:
                own = schemas_of(context)
                known = {s.key for s in found}
                report.setdefault(namespace, {})[context.name] = {
                    "problems": problems(own, [s for s in found if s.context == context.name]),
                    "unreadable": unreadable(context, found),
                    "new": [str(s) for s in own if s.key not in known],
                }
    compatible = not any(r["problems"] or r["unreadable"] for per in report.values() for r in per.values())
    if args.json:
        print_json({"compatible": compatible, "namespaces": report})
        return 0 if compatible else 1
    if not report:
        print("no Radix namespaces on this NATS: nothing to check against (name one with --namespace)")
    for namespace, per in report.items():
        for name, r in per.items():
            verdict = "compatible" if not (r["problems"] or r["unreadable"]) else "NOT compatible"
            print(f"namespace {namespace}, context {name}: {verdict}")
            for problem in r["problems"]:
                print(f"  refused at start: {problem}")
            for problem in r["unreadable"]:
                print(f"  unreadable: {problem}")
            if r["new"]:
                print(f"  would register: {', '.join(r['new'])}")
    return 0 if compatible else 1


@dataclass
class _Tally:
    """What one context's events stream holds, per event type and stored version."""

    messages: int = 0
    events: dict[tuple[str, str], int] = field(default_factory=dict)
    aggregates: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    """Aggregates the code given could not serve, each with the first reason."""

    def rows(self) -> Iterator[dict[str, Any]]:
        for (type_name, schema), events in sorted(self.events.items()):
            holding = self.aggregates[(type_name, schema)]
            yield {
                "type": type_name,
                "schema": schema,
                "events": events,
                "aggregates": len(holding),
                "examples": sorted(holding)[:_EXAMPLES],
            }


async def scan(args: argparse.Namespace) -> int:
    code: BoundedContext | None = load_context(args.code) if args.code else None
    deadline = time.monotonic() + args.timeout
    report: dict[str, dict[str, _Tally]] = {}
    async with connected(args) as nc:
        js = nc.jetstream(timeout=left(deadline))
        streams = await all_streams(js)
        for namespace in await namespaces(nc, args.namespace):
            for info in streams:
                context = context_of_events_stream(namespace, info.config.name or "")
                if context is None or (code is not None and context != code.name):
                    continue
                tally = report.setdefault(namespace, {}).setdefault(context, _Tally())
                await _scan_stream(nc, namespace, context, info, tally, code, args.timeout)
    refused = sum(len(t.refused) for per in report.values() for t in per.values())
    if args.json:
        print_json(
            {
                ns: {
                    ctx: {"messages": t.messages, "versions": list(t.rows()), "unservable": t.refused}
                    for ctx, t in per.items()
                }
                for ns, per in report.items()
            }
        )
        return 1 if refused else 0
    if not report:
        print("no events stored in the namespaces scanned")
    for namespace, per in report.items():
        for context, tally in per.items():
            print(f"namespace {namespace}, context {context}: {tally.messages} commit(s)")
            for row in tally.rows():
                more = ", ..." if row["aggregates"] > len(row["examples"]) else ""
                print(
                    f"  {row['type']:<24} {row['schema']:<6} {row['events']:>10} event(s) "
                    f"in {row['aggregates']} aggregate(s): {', '.join(row['examples'])}{more}"
                )
            if code is not None:
                print(f"  {len(tally.refused)} aggregate(s) that {args.code} could not serve")
                for aggregate, reason in sorted(tally.refused.items()):
                    print(f"    {aggregate}: {reason}")
    return 1 if refused else 0


async def _scan_stream(
    nc: NATS,
    namespace: str,
    context: str,
    info: js_api.StreamInfo,
    tally: _Tally,
    code: BoundedContext | None,
    timeout: float,
) -> None:
    """Read every commit of one events stream with an ordered consumer, showing progress every two seconds."""
    last = info.state.last_seq
    if not info.state.messages:
        return
    js = nc.jetstream()
    sub = await js.subscribe(
        context_filter(namespace, context, EVENTS), ordered_consumer=True, deliver_policy=js_api.DeliverPolicy.ALL
    )
    shown = time.monotonic()
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=timeout)
            except nats.errors.TimeoutError:
                raise RadixError(
                    f"the scan of {info.config.name} stalled after {tally.messages} of {info.state.messages} "
                    f"commits: no message within {timeout:g}s"
                ) from None
            _count(msg.subject, msg.data, tally, code)
            if time.monotonic() - shown > 2.0:
                shown = time.monotonic()
                print(f"radix: {info.config.name}: {tally.messages} of {info.state.messages} commits", file=sys.stderr)
            if msg.metadata.sequence.stream >= last or msg.metadata.num_pending == 0:
                return
    finally:
        await sub.unsubscribe()


def _count(subject: str, data: bytes, tally: _Tally, code: BoundedContext | None) -> None:
    parsed = parse_stored_subject(subject)
    if parsed is None:
        return
    aggregate = parsed[3]
    tally.messages += 1
    try:
        stored = [(e.type, e.schema) for e in wire.commit_decoder.decode(data).events]
    except Exception:  # msgspec.DecodeError and ValidationError: not a commit
        stored = [("(not a commit)", "-")]
    type_name = aggregate.partition("/")[0]
    codec = code.codecs.get(type_name) if code is not None else None
    for key in stored:
        tally.events[key] = tally.events.get(key, 0) + 1
        tally.aggregates.setdefault(key, set()).add(aggregate)
        if code is not None and aggregate not in tally.refused:
            if codec is None:
                tally.refused[aggregate] = f"{code.name} has no aggregate type {type_name}"
            elif (problem := codec.unreadable(*key)) is not None:
                tally.refused[aggregate] = str(problem)
