"""Shard allocation: which node should take a shard, and which shards should move, from the shard counts
one node sees (docs/placement.md, "Migration").

Pure functions, so every node computes the same plan from the same view, and the big-cluster
simulation (`radix.tools.placesim`) drives the very code the nodes run. The plan moves shards from
the most loaded node to the least loaded, one at a time, until the spread between them is within
`max(1, threshold * average)`, at most `batch` moves per giving node per check: least-shard
allocation in the manner of Akka's, decided by each node for itself, rate-limited by the check's
interval.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping

__all__ = ["assign", "least_loaded", "rebalance_plan"]


def least_loaded(counts: Mapping[str, int], *, besides: str | None = None) -> str | None:
    """The node holding the fewest shards (ties: the smallest id), other than `besides`; None if none."""
    candidates = [(count, node) for node, count in counts.items() if node != besides]
    return min(candidates)[1] if candidates else None


def assign(shards: Iterable[str], counts: Mapping[str, int]) -> dict[str, str]:
    """Shards nobody live holds (a node's that is gone), each given in turn (in key order) to the node then
    holding the fewest (ties: the smallest id): every node that sees the same counts assigns the same."""
    heap = [(count, node) for node, count in counts.items()]
    heapq.heapify(heap)
    given: dict[str, str] = {}
    for shard in sorted(shards):
        if not heap:
            break
        count, node = heapq.heappop(heap)
        given[shard] = node
        heapq.heappush(heap, (count + 1, node))
    return given


def rebalance_plan(counts: Mapping[str, int], *, threshold: float, batch: int) -> list[tuple[str, str]]:
    """The moves `(from node, to node)` that even out `counts` (shards per live node, zeros included).

    One move at a time from the most loaded node to the least loaded, while the most holds more than
    the least by over `max(1, threshold * average)`, each node giving at most `batch` moves. Ties
    break on node ids, so every node that sees the same counts plans the same moves.
    """
    if len(counts) < 2 or batch <= 0:
        return []
    spread = max(1.0, threshold * sum(counts.values()) / len(counts))
    most = [(-count, node) for node, count in counts.items()]
    least = [(count, node) for node, count in counts.items()]
    heapq.heapify(most)
    heapq.heapify(least)
    given: dict[str, int] = {}
    now = dict(counts)
    moves: list[tuple[str, str]] = []
    while most and least:
        giver, taker = most[0][1], least[0][1]
        if -most[0][0] != now[giver]:  # a stale heap entry: its count changed since it was pushed
            heapq.heappop(most)
            continue
        if least[0][0] != now[taker]:
            heapq.heappop(least)
            continue
        if now[giver] - now[taker] <= spread or giver == taker:
            break
        heapq.heappop(most)
        heapq.heappop(least)
        moves.append((giver, taker))
        now[giver] -= 1
        now[taker] += 1
        given[giver] = given.get(giver, 0) + 1
        if given[giver] < batch:
            heapq.heappush(most, (-now[giver], giver))
        heapq.heappush(least, (now[taker], taker))
    return moves
