"""The chaos checker on hand-made histories: a clean one passes; each anomaly fails its invariant."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import pytest

from radix.tools.chaos.checker import INVARIANTS, Result, check
from radix.tools.chaos.history import (
    FaultRecord,
    History,
    Op,
    Read,
    Run,
    StoredCommit,
    StoredEvent,
    read_history,
    write_history,
)
from radix.tools.chaos.soak import SoakReport

SERVERS = ["s1", "s2", "s3"]


def op(
    command_id: str,
    command: str,
    amount: int,
    version: int | None,
    *,
    start: float,
    outcome: Literal["ok", "fail", "info"] = "ok",
    expected_version: int | None = None,
) -> Op:
    return Op(
        process="c0",
        aggregate="acct-1",
        command_id=command_id,
        command=command,
        amount=amount,
        expected_version=expected_version,
        outcome=outcome,
        version=version,
        start=start,
        end=start + 0.1,
    )


def commit(position: int, node: str, epoch: int, *events: tuple[int, str, str, int]) -> StoredCommit:
    return StoredCommit(position=position, node=node, epoch=epoch, events=[StoredEvent(*e) for e in events])


def clean() -> History:
    """One account opened, a deposit, a withdrawal and a deposit after the heal; it moved once."""
    commits = [
        commit(1, "n1", 3, (1, "open", "Opened", 0)),
        commit(2, "n1", 3, (2, "d1", "Deposited", 10)),
        commit(5, "n2", 9, (3, "w1", "Withdrawn", 4), (4, "d2", "Deposited", 7)),
    ]
    return History(
        Run(seed=1, scenario="test", servers=SERVERS, healed_at=3.0),
        ops=[
            op("open", "Open", 0, 1, start=0.0),
            op("d1", "Deposit", 10, 2, start=1.0),
            op("w1", "Withdraw", 4, 3, expected_version=2, start=2.0),
            op("d2", "Deposit", 7, 4, start=3.5),
            op("w-big", "Withdraw", 99, 4, outcome="fail", start=3.6),
        ],
        faults=[
            FaultRecord(kind="kill-node", target="n1", phase="start", at=1.5),
            FaultRecord(kind="kill-node", target="n1", phase="end", at=2.5),
        ],
        reads=[Read(server=s, aggregate="acct-1", commits=copy.deepcopy(commits)) for s in SERVERS],
    )


def verdicts(history: History, min_ok: int = 1) -> dict[str, str]:
    return {r.name: r.verdict for r in check(history, min_ok=min_ok)}


def every_read(history: History, change: Callable[[list[StoredCommit]], object]) -> None:
    for read in history.reads:
        change(read.commits)


def test_a_clean_history_passes_every_invariant() -> None:
    """Every named invariant passes on a history with nothing wrong in it."""
    results = check(clean(), min_ok=1)
    assert len(results) == len(INVARIANTS) + 1
    assert {r.name: r.verdict for r in results} == dict.fromkeys((r.name for r in results), "pass")


def _lost(h: History) -> None:
    every_read(h, lambda c: c.pop())


def _unexpected(h: History) -> None:
    every_read(h, lambda c: c.append(commit(6, "n2", 9, (5, "ghost", "Deposited", 1))))


def _applied_twice(h: History) -> None:
    every_read(h, lambda c: c.append(commit(6, "n2", 9, (5, "d2", "Deposited", 7))))


def _acked_twice(h: History) -> None:
    h.ops.append(op("d1", "Deposit", 10, 3, start=2.5))


def _gap(h: History) -> None:
    every_read(h, lambda c: c[2].events.__setitem__(1, StoredEvent(5, "d2", "Deposited", 7)))


def _two_acked_on_one_expected_version(h: History) -> None:
    h.ops.append(op("w2", "Withdraw", 1, 5, expected_version=2, start=3.7, outcome="ok"))
    every_read(h, lambda c: c.append(commit(6, "n2", 9, (5, "w2", "Withdrawn", 1))))


def _conflict_missed_unanswered(h: History) -> None:
    """A withdrawal on expected version 2 stored after w1's (version 3): missed, though its sender heard nothing."""
    h.ops.append(op("w2", "Withdraw", 1, None, expected_version=2, start=3.7, outcome="info"))
    every_read(h, lambda c: c.append(commit(6, "n2", 9, (5, "w2", "Withdrawn", 1))))


def _two_acked_at_one_version(h: History) -> None:
    h.ops.append(op("d3", "Deposit", 1, 4, start=3.8))
    every_read(h, lambda c: c.append(commit(6, "n2", 9, (5, "d3", "Deposited", 1))))


def _zombie(h: History) -> None:
    h.ops.append(op("d3", "Deposit", 1, 5, start=3.8))
    every_read(h, lambda c: c.append(commit(6, "n1", 3, (5, "d3", "Deposited", 1))))


def _replica_behind(h: History) -> None:
    h.reads[2].commits.pop()


def _refused_yet_stored(h: History) -> None:
    every_read(h, lambda c: c.append(commit(6, "n2", 9, (5, "w-big", "Withdrawn", 1))))


def _amount_changed(h: History) -> None:
    every_read(h, lambda c: c[1].events.__setitem__(0, StoredEvent(2, "d1", "Deposited", 11)))


def _overdrawn(h: History) -> None:
    h.ops.append(op("w2", "Withdraw", 50, 5, start=3.8))
    every_read(h, lambda c: c.append(commit(6, "n2", 9, (5, "w2", "Withdrawn", 50))))


def _no_progress(h: History) -> None:
    h.run.healed_at = 10.0


def _never_healed(h: History) -> None:
    h.run.healed_at = None


def _never_moved(h: History) -> None:
    for read in h.reads:
        for stored in read.commits:
            stored.node, stored.epoch = "n1", 3


def _no_fault(h: History) -> None:
    h.faults.clear()


def _fault_not_healed(h: History) -> None:
    h.faults.pop()


ANOMALIES: list[tuple[Callable[[History], None], str]] = [
    (_lost, "NoLostAckedCommand"),
    (_unexpected, "NoUnexpectedEvent"),
    (_applied_twice, "NoDuplicateCommand"),
    (_acked_twice, "NoDuplicateCommand"),
    (_gap, "ContiguousVersions"),
    (_two_acked_on_one_expected_version, "FencedAppendExclusive"),
    (_two_acked_at_one_version, "FencedAppendExclusive"),
    (_conflict_missed_unanswered, "FencedAppendExclusive"),
    (_zombie, "EpochMonotonic"),
    (_replica_behind, "ReplicaParity"),
    (_refused_yet_stored, "RefusalsHold"),
    (_applied_twice, "CountWithinBounds"),
    (_amount_changed, "MoneyConserved"),
    (_unexpected, "MoneyConserved"),
    (_overdrawn, "NeverNegative"),
    (_no_progress, "ProgressAfterHeal"),
    (_never_healed, "ProgressAfterHeal"),
    (_never_moved, "OwnershipMoved"),
    (_no_fault, "FaultsInjected"),
    (_fault_not_healed, "FaultsInjected"),
]


@pytest.mark.parametrize(("anomaly", "invariant"), ANOMALIES, ids=[f"{a.__name__[1:]}-{i}" for a, i in ANOMALIES])
def test_each_anomaly_fails_its_invariant(anomaly: Callable[[History], None], invariant: str) -> None:
    """A history with one anomaly fails the invariant that names it, saying where."""
    history = clean()
    anomaly(history)
    result = next(r for r in check(history, min_ok=1) if r.name == invariant)
    assert result.verdict == "fail", result
    whole_run = ("MoneyConserved", "ProgressAfterHeal", "OwnershipMoved", "FaultsInjected")
    assert "acct-1" in result.detail or result.name in whole_run


def test_too_few_acknowledged_commands_is_no_pass() -> None:
    """A run that acknowledged fewer commands than asked for proved too little."""
    assert verdicts(clean(), min_ok=100)["MinimumOkOps"] == "fail"


def test_a_server_that_did_not_answer_makes_parity_inconclusive() -> None:
    """Without a read from every server, replicas cannot be compared: inconclusive, not pass."""
    history = clean()
    history.reads[1] = Read(server="s2", aggregate="acct-1", commits=[], error="TimeoutError()")
    results = verdicts(history)
    assert results["ReplicaParity"] == "inconclusive"
    assert results["NoLostAckedCommand"] == "pass"  # the other servers still agree


def test_an_aggregate_no_server_could_read_is_inconclusive() -> None:
    """Safety invariants need a stored history: without one they are inconclusive."""
    history = clean()
    history.reads = [Read(server=s, aggregate="acct-1", commits=[], error="down") for s in SERVERS]
    results = verdicts(history)
    assert results["NoLostAckedCommand"] == "inconclusive"
    assert results["ContiguousVersions"] == "inconclusive"


def test_maybe_applied_commands_widen_the_bounds() -> None:
    """A command with no answer (info) may or may not be stored; both are within bounds."""
    history = clean()
    history.ops.append(op("d3", "Deposit", 5, None, outcome="info", start=3.9))
    assert verdicts(history)["CountWithinBounds"] == "pass"
    every_read(history, lambda c: c.append(commit(6, "n2", 9, (5, "d3", "Deposited", 5))))
    results = verdicts(history)
    assert (results["CountWithinBounds"], results["MoneyConserved"]) == ("pass", "pass")


def test_a_retry_acknowledged_at_the_same_version_is_no_duplicate() -> None:
    """The same command id answered twice with the same version is idempotence, not a second application."""
    history = clean()
    history.ops.append(op("d1", "Deposit", 10, 2, start=2.9))
    assert verdicts(history)["NoDuplicateCommand"] == "pass"


def test_a_history_round_trips_through_json_lines(tmp_path: Path) -> None:
    """What the harness writes, the checker reads back unchanged."""
    history = clean()
    path = tmp_path / "history.jsonl"
    write_history(path, history.records())
    again = read_history(path)
    assert again.records() == history.records()
    assert [r.verdict for r in check(again, min_ok=1)] == [r.verdict for r in check(history, min_ok=1)]


def test_results_carry_every_violation() -> None:
    """A failing invariant lists every violation it found, not only the first few it prints."""
    history = clean()
    every_read(history, lambda c: c.clear())
    result: Result = next(r for r in check(history, min_ok=1) if r.name == "NoLostAckedCommand")
    assert len(result.violations) == 4


def test_a_soak_counts_a_run_stopped_before_its_faults_as_cut_short_not_failed() -> None:
    """Stopped on request before any fault, a run proves nothing: the soak lists it as cut short and counts
    no violation for it, while it still holds it to every safety invariant; unstopped, it failed."""
    history = clean()
    history.faults.clear()
    results = check(history, min_ok=1)
    assert {r.name for r in results if r.verdict != "pass"} == {"FaultsInjected"}
    stopped, unstopped = SoakReport(), SoakReport()
    stopped.add(5, history, results, stopped=True)
    unstopped.add(5, history, results)
    assert (stopped.cut_short, stopped.failed, stopped.violations, stopped.clean) == ([5], [], 0, True)
    assert (unstopped.cut_short, unstopped.failed, unstopped.violations, unstopped.clean) == ([], [5], 1, False)
    every_read(history, lambda commits: commits.append(copy.deepcopy(commits[-1])))
    broken = SoakReport()
    broken.add(6, history, check(history, min_ok=1), stopped=True)
    assert broken.failed == [6]
