"""`radix send`, `radix get` and `radix tail`: a command and its reply, an aggregate's state, and events and
command-log entries as they happen."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from collections.abc import Mapping
from typing import Any

import msgspec
from nats.aio.msg import Msg
from nats.js import api as js_api

from radix import wire
from radix.cli.common import connected, left, load_context, plain, print_json
from radix.client import SendOptions, command_headers, request, request_command
from radix.domain import AggregateCodec, BoundedContext
from radix.errors import DecodeError, RadixError, ReadTimeoutError
from radix.store.streams import all_streams
from radix.wire.names import (
    EVENTS,
    LOG,
    Address,
    command_subject,
    is_radix_stream,
    parse_stored_subject,
    query_subject,
)

__all__ = ["describe", "get", "intersect", "send", "tail", "watched"]


async def send(args: argparse.Namespace) -> int:
    address = Address(args.namespace, args.context, args.type, args.id)
    try:
        json.loads(args.body)
    except json.JSONDecodeError as e:
        raise RadixError(
            f'the command is not JSON ({e}); write it like \'{{"type": "CheckIn", "count": 3}}\''
        ) from None
    options = SendOptions(
        expected_version=args.expected_version, issuer=args.issuer, correlation_id=args.correlation_id
    )
    headers = command_headers(args.command_id or uuid.uuid4().hex, options)
    deadline = time.monotonic() + args.timeout
    async with connected(args) as nc:
        reply, node = await request_command(
            nc, command_subject(address), args.body.encode(), headers, timeout=left(deadline), attempt_timeout=2.0
        )
    print_json({**plain(reply), "node": node})
    return 0 if reply.status == wire.ACCEPTED else 1


async def get(args: argparse.Namespace) -> int:
    subject = query_subject(Address(args.namespace, args.context, args.type, args.id))
    deadline = time.monotonic() + args.timeout
    async with connected(args) as nc:
        msg = await request(
            nc,
            subject,
            b"",
            None,
            timeout=left(deadline),
            attempt_timeout=2.0,
            timed_out=ReadTimeoutError(subject, args.timeout),
        )
    reply = wire.state_decoder.decode(msg.data)
    print_json({**plain(reply), "node": (msg.headers or {}).get(wire.H_NODE)})
    return 0 if reply.status == wire.OK else 1


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


def describe(subject: str, data: bytes, contexts: Mapping[str, BoundedContext] | None = None) -> list[dict[str, Any]]:
    """What a message on a Radix subject says: events of a commit, or a command-log entry.

    The events of a context in `contexts` are also decoded as its code reads them (through its
    upcasters): `read` holds the event as `evolve` sees it and `read_as` its version, or `unreadable`
    says why that code cannot read it."""
    parsed = parse_stored_subject(subject)
    if parsed is None:
        return []
    namespace, context, kind, aggregate = parsed
    where = {"namespace": namespace, "context": context, "aggregate": aggregate}
    try:
        if kind == EVENTS:
            body = wire.commit_decoder.decode(data)
            code = (contexts or {}).get(context)
            codec = code.codecs.get(aggregate.partition("/")[0]) if code is not None else None
            events = [{"kind": "event", **where, **plain(e), **_read(codec, e)} for e in body.events]
            return events + [_command(entry, subject, where) for entry in wire.entries_in(body)]
        if kind == LOG:
            return [_command(wire.log_decoder.decode(data), subject, where)]
    except msgspec.DecodeError:
        return [{"kind": "unreadable", **where, "subject": subject}]
    return []


def _command(entry: wire.LogEntry, subject: str, where: dict[str, str]) -> dict[str, Any]:
    item = plain(entry)
    item["subject"] = item.pop("aggregate", subject)  # the command subject it was sent to
    return {"kind": "command", **item, **where}


def _read(codec: AggregateCodec | None, event: wire.RecordedEvent) -> dict[str, Any]:
    if codec is None:
        return {}
    try:
        read = codec.decode_event(event.type, event.schema, event.data)
    except DecodeError as e:  # UnreadableEventError included
        return {"unreadable": str(e)}
    return {"read_as": codec.versions[type(read)], "read": plain(read)}


def _line(item: dict[str, Any]) -> str:
    head = f"{item['namespace']} {item['context']} {item['aggregate']}"
    if item["kind"] == "event":
        data = json.dumps(item["data"], separators=(",", ":"))
        if "read" in item and item["read_as"] != item["schema"]:
            data += f" read as {item['read_as']} {json.dumps(item['read'], separators=(',', ':'))}"
        elif "unreadable" in item:
            data += f" UNREADABLE here: {item['unreadable']}"
        return f"{head} v{item['version']} {item['type']} {item['schema']} {data} (command {item['command_id']})"
    if item["kind"] == "command":
        detail = f" v{item['version']}" if item.get("version") is not None else ""
        reason = f": {item['reason']}" if item.get("reason") else ""
        again = ", duplicate" if item.get("duplicate") else ""
        cause = f"command {item['command_id']}{again}, node {item['node']}"
        return f"{head} {item['status']} {item.get('type')}{detail} ({cause}){reason}"
    return f"{head} (a message Radix cannot read on {item['subject']})"


def watched(pattern: str) -> list[str]:
    """The subjects `radix tail PATTERN` listens on: the pattern, and where it names the command log, the
    events subjects beside it, whose commits log the commands they accepted (docs/protocol.md)."""
    return [pattern, _of_kind(pattern, EVENTS)] if _kind(pattern) == LOG else [pattern]


def _filed_on(subject: str, item: dict[str, Any]) -> str:
    """The subject an item of a message on `subject` is filed on: a commit's log entry on the log's."""
    return _of_kind(subject, LOG) if item["kind"] == "command" and _kind(subject) == EVENTS else subject


def _kind(subject: str) -> str | None:
    """The kind token (`evt`, `cmd`, `log`) of a Radix subject or pattern, `radix.{ns}.{ctx}.{kind}.…`."""
    tokens = subject.split(".")
    return tokens[3] if len(tokens) > 3 else None


def _of_kind(subject: str, kind: str) -> str:
    """`subject` with its kind token replaced by `kind`."""
    tokens = subject.split(".")
    return ".".join([*tokens[:3], kind, *tokens[4:]])


async def tail(args: argparse.Namespace) -> int:
    contexts = {c.name: c for c in (load_context(spec) for spec in args.context)}
    shown = 0
    done = asyncio.Event()

    async def show(msg: Msg) -> None:
        nonlocal shown
        for item in describe(msg.subject, msg.data, contexts):
            if done.is_set():
                return
            if intersect(args.pattern, _filed_on(msg.subject, item)) is None:
                continue  # an event of a commit watched for its log entries, or the other way round
            print(json.dumps(item) if args.json else _line(item), flush=True)
            shown += 1
            if args.count and shown >= args.count:
                done.set()

    async with connected(args) as nc:
        if args.from_start:
            js = nc.jetstream()
            streams = [s for s in await all_streams(js) if s.config.name and is_radix_stream(s.config.name)]
            for stream in streams:
                for subjects in stream.config.subjects or []:
                    for filter_subject in {f for p in watched(args.pattern) if (f := intersect(p, subjects))}:
                        await js.subscribe(
                            filter_subject,
                            cb=show,
                            ordered_consumer=True,
                            deliver_policy=js_api.DeliverPolicy.ALL,
                        )
        else:
            for pattern in watched(args.pattern):
                await nc.subscribe(pattern, cb=show)
        print(
            f"radix: watching {args.pattern}" + (" from the start" if args.from_start else ""),
            file=sys.stderr,
            flush=True,
        )
        await done.wait()
    return 0
