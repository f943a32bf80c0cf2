"""The fault suite on a real three-server NATS cluster with Radix node processes (bounded for CI).

Every fault kind is injected on a fixed seed and every invariant must pass; each
deliberate bug of the test build (`radix.tools.chaos.mutations`) must fail the invariant
that guards against it, under the fault that exposes it. `radix chaos --soak` runs
the unbounded version (docs/chaos.md).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from radix.tools.catalog import KINDS, MUTATIONS
from radix.tools.chaos.checker import Result, summary
from radix.tools.chaos.harness import ChaosServers, ChaosSpec, chaos_servers, run_chaos
from radix.tools.chaos.mutations import PATCHES

#: The fault under which each mutation shows, and the invariant that must catch it.
EXPOSED_BY = {
    "skip-fence": ("slow-node", "ContiguousVersions"),
    "ack-before-publish": ("kill-node", "NoLostAckedCommand"),
    "ignore-lease-loss": ("pause-node", "EpochMonotonic"),
    "apply-twice": ("kill-node", "NoDuplicateCommand"),
}


def broken(results: list[Result]) -> list[Result]:
    """The invariants that did not pass."""
    return [r for r in results if r.verdict != "pass"]


@pytest.fixture(scope="module")
async def servers() -> AsyncIterator[ChaosServers]:
    """Three NATS servers with proxies on their routes; nodes stay behind proxies of their own."""
    async with chaos_servers() as running:
        yield running


@pytest.mark.slow
async def test_every_fault_kind_leaves_every_invariant_holding(servers: ChaosServers, tmp_path: Path) -> None:
    """One round of every fault kind (seed 101): every named invariant passes, and something was proved."""
    spec = ChaosSpec(seed=101, faults=len(KINDS))
    history, results = await run_chaos(spec, tmp_path, servers=servers)
    print(summary(results))
    assert {f.kind for f in history.faults if f.phase == "start"} == set(KINDS)
    assert broken(results) == [], summary(results)


@pytest.mark.slow
async def test_servers_cut_off_from_each_other_keep_every_invariant(servers: ChaosServers, tmp_path: Path) -> None:
    """NATS servers partitioned from their peers, the stream leader among them (seed 21).

    This schedule once made a node trust a lagging replica's copy of its old lease and write under
    its old epoch, and another re-apply a command a former owner had written: it pins both fixes.
    Writes stop while a cut-off leader is replaced (a JetStream election, about 7 s), so fewer
    commands are acknowledged than in other runs.
    """
    spec = ChaosSpec(seed=21, kinds=("partition-nats", "partition-leader"), faults=4, min_ok=20)
    _, results = await run_chaos(spec, tmp_path, servers=servers)
    print(summary(results))
    assert broken(results) == [], summary(results)


def test_every_mutation_has_a_fault_and_an_invariant() -> None:
    """No mutation goes untested."""
    assert set(EXPOSED_BY) == set(MUTATIONS) == set(PATCHES)


@pytest.mark.slow
@pytest.mark.parametrize("mutation", MUTATIONS)
async def test_each_mutation_is_caught_by_its_invariant(servers: ChaosServers, tmp_path: Path, mutation: str) -> None:
    """A node build with one deliberate bug, under the fault that exposes it, fails the invariant that guards it."""
    fault, invariant = EXPOSED_BY[mutation]
    # Three hot accounts, and faults aimed at the node that owns the most of them: every fault bites.
    spec = ChaosSpec(
        seed=7, kinds=(fault,), faults=4, accounts=3, mutation=mutation, progress_timeout=20, aim_at_owners=True
    )
    _, results = await run_chaos(spec, tmp_path, servers=servers)
    print(summary(results))
    caught = next(r for r in results if r.name == invariant)
    assert caught.verdict == "fail", summary(results)
