"""Shard allocation (`radix.runtime.allocation`): the least loaded node, and a rebalancing plan that evens
shard counts out from the most loaded to the least, within its spread and batch, the same on every node."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from radix.runtime.allocation import least_loaded, rebalance_plan


def applied(counts: dict[str, int], moves: list[tuple[str, str]]) -> dict[str, int]:
    after = dict(counts)
    for giver, taker in moves:
        after[giver] -= 1
        after[taker] += 1
    return after


def test_the_least_loaded_node_is_the_one_with_fewest_shards_ties_by_id() -> None:
    assert least_loaded({"a": 3, "b": 1, "c": 1}) == "b"
    assert least_loaded({"a": 3, "b": 1}, besides="b") == "a"
    assert least_loaded({"a": 3}, besides="a") is None


def test_a_node_joining_a_hundred_gets_its_share_from_the_most_loaded() -> None:
    """1,024 shards on 100 nodes (24 hold 11, 76 hold 10), and a node joins with none: ten of the 24 give one
    shard each, and no other move is made."""
    counts = {f"n{i:03}": 11 if i < 24 else 10 for i in range(100)} | {"new": 0}
    moves = rebalance_plan(counts, threshold=0.0, batch=32)
    assert Counter(taker for _, taker in moves) == {"new": 10}
    assert all(counts[giver] == 11 for giver, _ in moves)
    assert max(applied(counts, moves).values()) - min(applied(counts, moves).values()) <= 1


def test_the_batch_bounds_what_each_node_gives_per_check() -> None:
    moves = rebalance_plan({"a": 100, "b": 0}, threshold=0.0, batch=8)
    assert moves == [("a", "b")] * 8


@given(
    st.dictionaries(st.sampled_from("abcdefgh"), st.integers(0, 200), min_size=2),
    st.floats(0.0, 1.0),
    st.integers(1, 64),
)
def test_a_plan_only_narrows_the_spread_and_is_the_same_on_every_node(
    counts: dict[str, int], threshold: float, batch: int
) -> None:
    """A plan moves shards only from more loaded nodes to less loaded ones, keeps the total, never lets a
    node give more than `batch`, and, with the batch unbounded, ends within its spread. The same counts
    in another order plan the same moves."""
    moves = rebalance_plan(counts, threshold=threshold, batch=batch)
    after = applied(counts, moves)
    assert sum(after.values()) == sum(counts.values())
    assert all(counts[g] > counts[t] for g, t in moves)
    assert all(n <= batch for n in Counter(g for g, _ in moves).values())
    assert max(after.values()) - min(after.values()) <= max(counts.values()) - min(counts.values())
    assert rebalance_plan(dict(reversed(list(counts.items()))), threshold=threshold, batch=batch) == moves
    unbounded = applied(counts, rebalance_plan(counts, threshold=threshold, batch=10**6))
    spread = max(1.0, threshold * sum(counts.values()) / len(counts))
    assert max(unbounded.values()) - min(unbounded.values()) <= spread
