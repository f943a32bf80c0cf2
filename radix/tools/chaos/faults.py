"""Faults and their schedule: which fault, on which target, for how long, drawn from a printed seed.

A fault is injected, held, then healed; faults run one after another with a gap between
them, and every run ends healed. The same seed gives the same schedule.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from radix.errors import ConfigError

__all__ = ["KINDS", "NODE_KINDS", "Fault", "schedule"]

#: Faults on a Radix node process (the target is a node).
NODE_KINDS = (
    "kill-node",  # kill -9, then start it again
    "pause-node",  # SIGSTOP for longer than the liveness TTL, then SIGCONT: a zombie owner
    "drain-node",  # SIGTERM: a graceful drain, then start it again
    "slow-node",  # every byte from the node to NATS delayed beyond the liveness TTL (it hears NATS at once)
    "partition-node",  # the node's links to every NATS server black-holed
    "pause-kill-node",  # paused past its TTL, then killed while paused
    "partition-kill-node",  # partitioned, then killed while partitioned
)
#: Faults on a NATS server (the target is a server; the -leader kinds pick the events stream's leader):
#: killed and restarted on its store, paused, or cut off from the other servers (its routes black-holed).
SERVER_KINDS = ("kill-nats", "kill-leader", "pause-nats", "partition-nats", "partition-leader")
#: Faults on the whole cluster.
CLUSTER_KINDS = ("rolling-restart",)
KINDS = NODE_KINDS + SERVER_KINDS + CLUSTER_KINDS


@dataclass(frozen=True)
class Fault:
    """One fault: its kind, its target's index, how long it is held and the pause after it (seconds)."""

    kind: str
    target: int
    hold: float
    gap: float

    def __str__(self) -> str:
        return f"{self.kind}[{self.target}] hold {self.hold:.1f}s gap {self.gap:.1f}s"


def schedule(seed: int, *, count: int, kinds: tuple[str, ...], nodes: int, servers: int, ttl: int) -> list[Fault]:
    """`count` faults from `kinds` in an order drawn by `seed`: every kind once, in a shuffled round, before
    any comes again. Holds are long enough for the fault to bite (past the liveness TTL)."""
    unknown = set(kinds) - set(KINDS)
    if unknown or not kinds:
        raise ConfigError("kinds", sorted(unknown) or list(kinds), f"choose among {', '.join(KINDS)}")
    rng = random.Random(seed)
    faults: list[Fault] = []
    round_: list[str] = []
    for _ in range(count):
        if not round_:
            round_ = rng.sample(kinds, len(kinds))
        kind = round_.pop()
        target = rng.randrange(servers if kind in SERVER_KINDS else nodes)
        hold = rng.uniform(ttl + 0.5, ttl + 3.0)
        if kind == "slow-node":
            # What a slow node sends lands `hold` later: late enough that another node has taken its
            # aggregates over (a TTL, then a client's retry) and written, so the fence must refuse it.
            hold += ttl
        faults.append(Fault(kind, target, round(hold, 2), round(rng.uniform(0.5, 2.0), 2)))
    return faults
