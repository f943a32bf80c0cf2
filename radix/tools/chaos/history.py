"""The recorded history of a chaos run: one JSON line per operation, activation, fault and final read.

Times are seconds on the harness's monotonic clock, from the start of the run. An
operation's outcome is `ok` (accepted: the version told is recorded), `fail` (a definite
refusal: rejected or conflict) or `info` (no answer, or an error that leaves it open
whether the command was applied). A `read` is one aggregate's stored history as one
NATS server served it after the run healed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import msgspec

__all__ = [
    "Activation",
    "FaultRecord",
    "History",
    "Op",
    "Outcome",
    "Read",
    "Record",
    "Run",
    "StoredCommit",
    "StoredEvent",
    "read_history",
    "write_history",
]

Outcome = Literal["ok", "fail", "info"]


class Run(msgspec.Struct, tag="run", kw_only=True):
    """What was run: the seed, the scenario, the mutation if any, and when the cluster was healed."""

    seed: int
    scenario: str
    mutation: str | None = None
    nodes: list[str] = []
    servers: list[str] = []
    healed_at: float | None = None
    ended_at: float | None = None


class Op(msgspec.Struct, tag="op", kw_only=True):
    """One command sent by one client process, and what came of it."""

    process: str
    aggregate: str
    command_id: str
    command: str
    amount: int = 0
    expected_version: int | None = None
    outcome: Outcome
    reason: str = ""
    version: int | None = None
    start: float
    end: float


class Activation(msgspec.Struct, tag="activation", kw_only=True):
    """An aggregate activated on a node under a lease epoch (from the node's log)."""

    node: str
    aggregate: str
    epoch: int
    version: int


class FaultRecord(msgspec.Struct, tag="fault", kw_only=True):
    """A fault injected (`start`) or healed (`end`)."""

    kind: str
    target: str
    phase: Literal["start", "end"]
    at: float
    detail: str = ""


class StoredEvent(msgspec.Struct, array_like=True):
    version: int
    command_id: str
    type: str
    amount: int


class StoredCommit(msgspec.Struct, kw_only=True):
    """One stored commit as read back: its stream position, writer and events."""

    position: int
    node: str | None
    epoch: int | None
    events: list[StoredEvent]


class Read(msgspec.Struct, tag="read", kw_only=True):
    """One aggregate's stored history as served by one NATS server after healing."""

    server: str
    aggregate: str
    commits: list[StoredCommit]
    error: str = ""


Record = Run | Op | Activation | FaultRecord | Read

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Record)


def write_history(path: Path, records: Iterable[Record]) -> None:
    """Write records as JSON lines."""
    with path.open("wb") as out:
        for record in records:
            out.write(_encoder.encode(record) + b"\n")


def read_history(path: Path) -> History:
    """Read a history written by `write_history`."""
    return History.of(_decoder.decode(line) for line in path.read_bytes().splitlines() if line.strip())


@dataclass
class History:
    """A run's records, grouped for the checker."""

    run: Run
    ops: list[Op] = field(default_factory=list)
    activations: list[Activation] = field(default_factory=list)
    faults: list[FaultRecord] = field(default_factory=list)
    reads: list[Read] = field(default_factory=list)

    @classmethod
    def of(cls, records: Iterable[Record]) -> History:
        history = cls(Run(seed=0, scenario="?"))
        for record in records:
            match record:
                case Run():
                    history.run = record
                case Op():
                    history.ops.append(record)
                case Activation():
                    history.activations.append(record)
                case FaultRecord():
                    history.faults.append(record)
                case Read():
                    history.reads.append(record)
        return history

    def records(self) -> list[Record]:
        return [self.run, *self.ops, *self.activations, *self.faults, *self.reads]

    def aggregates(self) -> list[str]:
        """Every aggregate that was sent a command or read, in order of first mention."""
        seen = dict.fromkeys(o.aggregate for o in self.ops)
        seen.update(dict.fromkeys(r.aggregate for r in self.reads))
        return list(seen)

    def ops_by_aggregate(self) -> dict[str, list[Op]]:
        grouped: dict[str, list[Op]] = defaultdict(list)
        for op in self.ops:
            grouped[op.aggregate].append(op)
        return grouped

    def reads_by_aggregate(self) -> dict[str, list[Read]]:
        grouped: dict[str, list[Read]] = defaultdict(list)
        for read in self.reads:
            grouped[read.aggregate].append(read)
        return grouped


def reference(reads: Sequence[Read]) -> list[StoredCommit] | None:
    """The history most servers agree on (the first of the largest group); None if no server answered."""
    answered = [r for r in reads if not r.error]
    if not answered:
        return None
    counts: dict[bytes, int] = defaultdict(int)
    for read in answered:
        counts[_encoder.encode(read.commits)] += 1
    best = max(answered, key=lambda r: counts[_encoder.encode(r.commits)])
    return best.commits
