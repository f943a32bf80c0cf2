"""`radix merge REACTION`: run a reaction over a context's stored history, for a chosen subset of its
aggregates (a stage), and show how far it got; what merging aggregates is built on
(docs/merging-aggregates.md).

A reaction declared `live=False` is run by no node; this runs it on demand. It reads the context's
events up to their end when it starts, picks the events the reaction selects whose aggregate is in the
stage (`--ids`, `--fraction`, `--where`; every aggregate if none is given), sends the commands the
reaction returns with the ids a node would give them (derived from the event, so each applies once,
whoever sends it and however often), and keeps its progress in the KV bucket `radix_{ns}_merges`
under `{ctx}.{reaction}.{stage}`. Stopped (Ctrl-C, SIGTERM), it finishes what is in flight, saves how
far every command before had an answer, and exits 130; the same command resumes from there. Run
again once done, it sends what was stored since.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import re
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import nats.errors
from nats.aio.client import Client as NATS
from nats.js import api as js_api

from radix import wire
from radix.cli.common import connected, import_module, load_context, print_json
from radix.domain import BoundedContext, Reaction, Record
from radix.errors import RadixError
from radix.runtime.partition import records, send_command
from radix.store.kv import KVBucket
from radix.wire.names import (
    EVENTS,
    context_filter,
    events_stream,
    merges_bucket,
    parse_stored_subject,
    validate_namespace,
    validate_processor,
)

__all__ = ["Progress", "run"]

#: Commands in flight at once.
_IN_FLIGHT = 16
#: Seconds between progress lines (and saves of the progress).
_EVERY = 2.0


class Progress(msgspec.Struct, kw_only=True):
    """How far a stage got: every selected event up to `position` (in the events stream) had its commands
    answered; the counts are those of the events up to there."""

    position: int = 0
    moved: int = 0
    """Events whose commands were all accepted."""
    refused: int = 0
    """Events with a command refused (rejected or conflicting), e.g. sent to an aggregate done already."""
    failed: int = 0
    """Events with a command that failed (an error, no answer): sent again on the next run."""
    reasons: list[str] = []
    """The first refusals and failures, as the aggregates said them."""


@dataclass
class _Item:
    record: Record[Any]
    outcome: str = ""  # "", moved, refused, failed


@dataclass
class _Run:
    """One run of one stage."""

    nc: NATS
    namespace: str
    context: BoundedContext
    reaction: Reaction
    timeout: float
    items: list[_Item]
    progress: Progress
    saved_through: int = 0  # items settled into `progress`
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    def counts(self) -> tuple[int, int, int, int]:
        """moved, refused, failed, remaining: those saved, and those answered since."""
        later = [i.outcome for i in self.items[self.saved_through :]]
        p = self.progress
        return (
            p.moved + later.count("moved"),
            p.refused + later.count("refused"),
            later.count("failed"),
            later.count(""),
        )

    def settle(self) -> None:
        """Move every answered item at the front into `progress` (a failed one stops it: sent again)."""
        for item in self.items[self.saved_through :]:
            if item.outcome in ("", "failed"):
                break
            self.saved_through += 1
            self.progress.position = item.record.position
            if item.outcome == "moved":
                self.progress.moved += 1
            else:
                self.progress.refused += 1

    async def send_all(self, rate: float | None) -> None:
        """Handle every item, `_IN_FLIGHT` at a time, at most `rate` a second if given; none once stopping."""
        gate = asyncio.Semaphore(_IN_FLIGHT)

        async def one(item: _Item) -> None:
            try:
                if not self.stopping.is_set():
                    item.outcome = await self._handled(item.record)
            finally:
                gate.release()

        began = time.monotonic()
        async with asyncio.TaskGroup() as group:
            for n, item in enumerate(self.items):
                if rate is not None:
                    await asyncio.sleep(max(0.0, began + n / rate - time.monotonic()))
                await gate.acquire()
                if self.stopping.is_set():
                    gate.release()
                    break
                group.create_task(one(item))

    async def _handled(self, record: Record[Any]) -> str:
        outcome = "moved"
        for index, sent in enumerate(self.reaction.handle(record) or ()):
            try:
                reply = await send_command(
                    self.nc, self.namespace, self.context, self.reaction.name, record, index, sent, timeout=self.timeout
                )
            except (RadixError, nats.errors.Error, TimeoutError) as e:
                self._note(f"{record.name}: {e}")
                return "failed"
            if reply.status == wire.ERROR:
                self._note(f"{record.name}: {reply.reason}")
                return "failed"
            if reply.status in (wire.REJECTED, wire.CONFLICT):
                self._note(f"{record.name}: {reply.reason}")
                outcome = "refused"
        return outcome

    def _note(self, reason: str) -> None:
        if len(self.progress.reasons) < 5:
            self.progress.reasons.append(reason)


async def run(args: argparse.Namespace) -> int:
    namespace = validate_namespace(args.namespace)
    context = load_context(args.code)
    name = validate_processor(args.reaction)
    reaction = next((r for r in context.reactions if r.name == name), None)
    if reaction is None:
        names = ", ".join(r.name for r in context.reactions) or "none"
        raise RadixError(f"{args.code} declares no reaction {name!r} (it declares {names})")
    chosen, stage = _stage(args)
    key = f"{context.name}.{name}.{stage}"
    async with connected(args) as nc:
        bucket = await KVBucket(nc, merges_bucket(namespace), replicas=args.replicas, timeout=args.timeout).open()
        entry = await bucket.get(key, leader=True)
        progress = msgspec.json.decode(entry.value, type=Progress) if entry.value else Progress()
        items = [_Item(r) for r in await _history(nc, namespace, context, reaction, progress.position, chosen)]
        merge = _Run(nc, namespace, context, reaction, args.command_timeout, items, progress)
        _say(f"merge {name} (stage {stage}): {len(items)} events to handle after position {progress.position}")
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, merge.stopping.set)
        sending = asyncio.create_task(merge.send_all(args.rate))
        try:
            while not sending.done():
                await asyncio.wait([sending], timeout=_EVERY)
                merge.settle()
                await bucket.put(key, msgspec.json.encode(merge.progress))
                _say(f"merge {name} (stage {stage}): {_shown(merge.counts())}")
            await sending
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
    moved, refused, failed, remaining = merge.counts()
    stopped = merge.stopping.is_set()
    if args.json:
        print_json(
            {
                "reaction": name,
                "stage": stage,
                "position": merge.progress.position,
                "moved": moved,
                "refused": refused,
                "failed": failed,
                "remaining": remaining,
                "stopped": stopped,
                "reasons": merge.progress.reasons,
            }
        )
    for reason in merge.progress.reasons:
        _say(f"  {reason}")
    if stopped:
        _say(f"merge {name} (stage {stage}) stopped at position {merge.progress.position}: run it again to resume")
        return 130
    if failed:
        _say(f"merge {name} (stage {stage}): {failed} failed; run it again to send them again")
        return 1
    _say(f"merge {name} (stage {stage}) done: {moved} moved, {refused} refused")
    return 0


def _shown(counts: tuple[int, int, int, int]) -> str:
    moved, refused, failed, remaining = counts
    return f"{moved} moved, {refused} refused, {failed} failed, {remaining} remaining"


def _say(line: str) -> None:
    print(f"radix: {line}", file=sys.stderr, flush=True)


async def _history(
    nc: NATS,
    namespace: str,
    context: BoundedContext,
    reaction: Reaction,
    after: int,
    chosen: Callable[[Record[Any]], bool],
) -> list[Record[Any]]:
    """The events after `after`, up to the events stream's end now, that the reaction and the stage select."""
    js = nc.jetstream()
    stream = events_stream(namespace, context.name)
    try:
        end = int((await js.stream_info(stream)).state.last_seq or 0)
    except nats.js.errors.NotFoundError:
        raise RadixError(f"no events are stored for {namespace}/{context.name} (no stream {stream})") from None
    if end <= after:
        return []
    subscription = await js.subscribe(
        context_filter(namespace, context.name, EVENTS),
        ordered_consumer=True,
        config=js_api.ConsumerConfig(deliver_policy=js_api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=after + 1),
    )
    found: list[Record[Any]] = []
    try:
        while True:
            msg = await subscription.next_msg(timeout=10)
            position = msg.metadata.sequence.stream
            if position > end:
                break
            parsed = parse_stored_subject(msg.subject)
            if parsed is not None:
                aggregate_type, _, aggregate_id = parsed[3].partition("/")
                picked = records(namespace, context, reaction, aggregate_type, aggregate_id, msg.data, position)
                found.extend(r for r in picked if chosen(r))
            if position >= end:
                break
    finally:
        with contextlib.suppress(Exception):
            await subscription.unsubscribe()
    return found


def _stage(args: argparse.Namespace) -> tuple[Callable[[Record[Any]], bool], str]:
    """Which aggregates this stage takes, and its name (given, or made from the choice)."""
    given = [a for a in ("ids", "fraction", "where") if getattr(args, a) is not None]
    if len(given) > 1:
        raise RadixError("choose the stage's aggregates one way: --ids, --fraction or --where")
    chosen: Callable[[Record[Any]], bool]
    if args.ids is not None:
        ids = frozenset(i for i in args.ids.split(",") if i)
        chosen, made = (
            (lambda r: r.aggregate_id in ids),
            "ids-" + hashlib.blake2b(",".join(sorted(ids)).encode(), digest_size=4).hexdigest(),
        )
    elif args.fraction is not None:
        if not 0 < args.fraction <= 1:
            raise RadixError(f"--fraction is above 0 and at most 1, not {args.fraction}")
        share = f"{args.fraction:g}".replace(".", "-")
        chosen, made = (lambda r: _share(r.aggregate_id) < args.fraction), f"fraction-{share}"
    elif args.where is not None:
        chosen, made = _predicate(args.where), "where-" + re.sub(r"[^a-z0-9]+", "-", args.where.lower()).strip("-")
    else:
        chosen, made = (lambda r: True), "all"
    stage = args.stage or made
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,63}", stage):
        raise RadixError(f"a stage is named with lowercase letters, digits and '-' (at most 64), not {stage!r}")
    return chosen, stage


def _share(aggregate_id: str) -> float:
    """Where an aggregate falls in [0, 1): the same on every run, so a fraction's stage is stable and a
    larger fraction takes in a smaller one."""
    return int.from_bytes(hashlib.blake2b(aggregate_id.encode(), digest_size=8).digest(), "big") / 2**64


def _predicate(spec: str) -> Callable[[Record[Any]], bool]:
    attribute = spec.partition(":")[2]
    found = getattr(import_module(spec, "--where"), attribute, None) if attribute else None
    if not callable(found):
        raise RadixError(f"--where {spec} names no function of a Record (write it as MODULE:FUNCTION)")
    predicate: Callable[[Record[Any]], bool] = found
    return predicate
