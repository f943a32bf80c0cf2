"""The checker: named invariants over a recorded history, each answering pass, fail or inconclusive.

Pure Python and linear in the history. Safety invariants are checked per aggregate
against the stored history most servers agree on; liveness and non-vacuity invariants
make sure a run proved something (a run with no fault, no move or no progress is no pass).

    results = check(read_history(path))
    assert all(r.verdict == "pass" for r in results), summary(results)
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from radix.tools.chaos.history import History, Op, Read, StoredCommit, reference

__all__ = ["INVARIANTS", "Result", "check", "summary"]

Verdict = Literal["pass", "fail", "inconclusive"]

#: Commands that a concurrent command of the same kind conflicts with (the bank's rule).
CONFLICTING = frozenset({"Withdraw"})
#: Events that add or take money, and their sign.
SIGN = {"Deposited": 1, "Withdrawn": -1, "Deposit": 1, "Withdraw": -1}
MAX_SHOWN = 5


@dataclass(frozen=True)
class Result:
    """One invariant's verdict, with what it found."""

    name: str
    verdict: Verdict
    detail: str
    violations: tuple[str, ...] = ()


@dataclass
class _Aggregate:
    """What the checker knows of one aggregate: its ops, reads, and the stored history used."""

    name: str
    ops: list[Op]
    reads: list[Read]
    commits: list[StoredCommit] | None

    def outcomes(self) -> dict[str, str]:
        """Each command id's outcome over all its sends: ok if any was, else info if any was, else fail."""
        outcome: dict[str, str] = {}
        for op in self.ops:
            known = outcome.get(op.command_id)
            if known != "ok" and not (known == "info" and op.outcome == "fail"):
                outcome[op.command_id] = op.outcome
        return outcome

    def stored(self) -> dict[str, int]:
        """Stored command id -> the version of its last event."""
        return {e.command_id: e.version for c in self.commits or () for e in c.events}


def _aggregates(history: History) -> list[_Aggregate]:
    ops, reads = history.ops_by_aggregate(), history.reads_by_aggregate()
    return [
        _Aggregate(name, ops.get(name, []), reads.get(name, []), reference(reads.get(name, [])))
        for name in history.aggregates()
    ]


def _verdict(name: str, violations: list[str], checked: int, unknown: list[str], what: str) -> Result:
    if violations:
        shown = tuple(violations[:MAX_SHOWN])
        more = f" (+{len(violations) - MAX_SHOWN} more)" if len(violations) > MAX_SHOWN else ""
        return Result(name, "fail", f"{len(violations)} violations{more}: {'; '.join(shown)}", tuple(violations))
    if unknown or checked == 0:
        return Result(name, "inconclusive", f"no stored history for {', '.join(unknown) or 'any aggregate'}")
    return Result(name, "pass", f"{checked} {what}")


def _per_aggregate(name: str, what: str, test: Callable[[_Aggregate, list[StoredCommit]], list[str]]) -> Invariant:
    """An invariant checked on each aggregate's stored history in turn."""

    def invariant(history: History) -> Result:
        violations: list[str] = []
        unknown: list[str] = []
        checked = 0
        for aggregate in _aggregates(history):
            if aggregate.commits is None:
                unknown.append(aggregate.name)
                continue
            violations.extend(f"{aggregate.name}: {v}" for v in test(aggregate, aggregate.commits))
            checked += 1
        return _verdict(name, violations, checked, unknown, what)

    invariant.__name__ = name
    return invariant


Invariant = Callable[[History], Result]


# -- safety: what the store holds -------------------------------------------------------------


def _no_lost_acked(aggregate: _Aggregate, commits: list[StoredCommit]) -> list[str]:
    stored = aggregate.stored()
    return [
        f"{op.command_id} acknowledged at version {op.version} but "
        + ("not stored" if op.command_id not in stored else f"stored at {stored[op.command_id]}")
        for op in aggregate.ops
        if op.outcome == "ok" and stored.get(op.command_id) != op.version
    ]


def _no_unexpected_event(aggregate: _Aggregate, commits: list[StoredCommit]) -> list[str]:
    attempted = {op.command_id for op in aggregate.ops}
    return [
        f"event v{e.version} from {e.command_id}, a command never sent"
        for c in commits
        for e in c.events
        if e.command_id not in attempted
    ]


def _no_duplicate_command(aggregate: _Aggregate, commits: list[StoredCommit]) -> list[str]:
    violations: list[str] = []
    positions: dict[str, int] = {}
    for commit in commits:
        for event in commit.events:
            first = positions.setdefault(event.command_id, commit.position)
            if first != commit.position:
                violations.append(f"{event.command_id} applied in commits {first} and {commit.position}")
    told: dict[str, int | None] = {}
    for op in aggregate.ops:
        if op.outcome == "ok":
            earlier = told.setdefault(op.command_id, op.version)
            if earlier != op.version:
                violations.append(f"{op.command_id} acknowledged at versions {earlier} and {op.version}")
    return violations


def _contiguous(aggregate: _Aggregate, commits: list[StoredCommit]) -> list[str]:
    expected = 1
    for commit in commits:
        for event in commit.events:
            if event.version != expected:
                return [f"version {event.version} where {expected} was due (commit {commit.position})"]
            expected += 1
    return []


def _fenced_exclusive(aggregate: _Aggregate, commits: list[StoredCommit]) -> list[str]:
    violations: list[str] = []
    by_version: dict[int, str] = {}
    by_expected: dict[int, str] = {}
    expected_of: dict[str, int] = {}
    for op in aggregate.ops:
        if op.command in CONFLICTING and op.expected_version is not None:
            expected_of[op.command_id] = op.expected_version
        if op.outcome != "ok" or op.version is None:
            continue
        holder = by_version.setdefault(op.version, op.command_id)
        if holder != op.command_id:
            violations.append(f"{holder} and {op.command_id} both acknowledged at version {op.version}")
        if op.command in CONFLICTING and op.expected_version is not None:
            first = by_expected.setdefault(op.expected_version, op.command_id)
            if first != op.command_id:
                violations.append(
                    f"{first} and {op.command_id} both accepted on expected version {op.expected_version} "
                    f"({_where(aggregate, commits, first)}; {_where(aggregate, commits, op.command_id)})"
                )
    return violations + [
        f"{cid} stored at version {version} on expected version {expected_of[cid]}, after {other}'s withdrawal: "
        f"a conflict missed ({_where(aggregate, commits, cid)}; {_where(aggregate, commits, other)})"
        for cid, version, other in _missed_conflicts(commits, expected_of)
    ]


def _where(aggregate: _Aggregate, commits: list[StoredCommit], command_id: str) -> str:
    """Where a command is stored and when it was sent: what a violation needs to be traced in the logs."""
    stored = next(
        (
            f"v{e.version} at {c.position} by {c.node} epoch {c.epoch}"
            for c in commits
            for e in c.events
            if e.command_id == command_id
        ),
        "not stored",
    )
    sends = ", ".join(f"{o.outcome} {o.start:.2f}-{o.end:.2f}s" for o in aggregate.ops if o.command_id == command_id)
    return f"{command_id}: {stored}, sent {sends or 'never'}"


def _missed_conflicts(commits: list[StoredCommit], expected_of: dict[str, int]) -> list[tuple[str, int, str]]:
    """Each stored withdrawal whose sender expected a version below another withdrawal stored before it:
    its conflict check missed that one (whatever its sender was told: ok, or no answer). As (command id,
    version, the withdrawal missed)."""
    missed: list[tuple[str, int, str]] = []
    withdrawn: list[tuple[int, str]] = []  # (version, command id) of the withdrawals stored so far
    for event in (e for c in commits for e in c.events):
        if SIGN.get(event.type) != -1:
            continue
        expected = expected_of.get(event.command_id)
        if expected is not None:
            before = [cid for version, cid in withdrawn if version > expected and cid != event.command_id]
            if before:
                missed.append((event.command_id, event.version, before[0]))
        withdrawn.append((event.version, event.command_id))
    return missed


def _epoch_monotonic(aggregate: _Aggregate, commits: list[StoredCommit]) -> list[str]:
    highest, holder = -1, ""
    for commit in commits:
        if commit.epoch is None:
            continue
        if commit.epoch < highest:
            return [
                f"commit {commit.position} by {commit.node} under epoch {commit.epoch} "
                f"after {holder}'s epoch {highest}: a zombie write"
            ]
        highest, holder = commit.epoch, commit.node or "?"
    return []


def _count_within_bounds(aggregate: _Aggregate, commits: list[StoredCommit]) -> list[str]:
    outcomes = aggregate.outcomes()
    # A command applied twice counts twice; one refused yet stored is RefusalsHold's to report.
    applied = {(e.command_id, c.position) for c in commits for e in c.events if outcomes.get(e.command_id) != "fail"}
    acked = sum(1 for o in outcomes.values() if o == "ok")
    maybe = sum(1 for o in outcomes.values() if o == "info")
    if not acked <= len(applied) <= acked + maybe:
        return [f"{len(applied)} commands stored; between {acked} and {acked + maybe} possible"]
    return []


def _refusals_hold(aggregate: _Aggregate, commits: list[StoredCommit]) -> list[str]:
    outcomes = aggregate.outcomes()
    stored = sorted({e.command_id for c in commits for e in c.events if outcomes.get(e.command_id) == "fail"})
    return [f"{c} was refused, yet stored" for c in stored]


def _never_negative(aggregate: _Aggregate, commits: list[StoredCommit]) -> list[str]:
    balance = 0
    for commit in commits:
        for event in commit.events:
            balance += SIGN.get(event.type, 0) * event.amount
            if balance < 0:
                return [f"balance {balance} at version {event.version}"]
    return []


def _replica_parity(history: History) -> Result:
    violations: list[str] = []
    unknown: list[str] = []
    servers = set(history.run.servers)
    checked = 0
    for aggregate, reads in history.reads_by_aggregate().items():
        answered = [r for r in reads if not r.error]
        if len(answered) < max(2, len(servers)):
            unknown.append(f"{aggregate} ({len(answered)} of {max(2, len(servers))} servers answered)")
            continue
        first = answered[0]
        for other in answered[1:]:
            if other.commits != first.commits:
                violations.append(
                    f"{aggregate}: {first.server} holds {_size(first.commits)} events, "
                    f"{other.server} holds {_size(other.commits)}, or they differ"
                )
        checked += 1
    return _verdict("ReplicaParity", violations, checked, unknown, "aggregates read alike from every server")


def _size(commits: Sequence[StoredCommit]) -> int:
    return sum(len(c.events) for c in commits)


def _money_conserved(history: History) -> Result:
    """The money stored equals the money the clients moved: every event's amount is its command's,
    and the total lies between what was acknowledged and what may have been applied."""
    violations: list[str] = []
    unknown: list[str] = []
    total = low = high = 0
    for aggregate in _aggregates(history):
        if aggregate.commits is None:
            unknown.append(aggregate.name)
            continue
        sent = {op.command_id: op for op in aggregate.ops}
        for commit in aggregate.commits:
            for event in commit.events:
                total += SIGN.get(event.type, 0) * event.amount
                op = sent.get(event.command_id)
                if op is not None and SIGN.get(event.type, 0) and event.amount != op.amount:
                    violations.append(f"{aggregate.name}: {event.command_id} sent {op.amount}, stored {event.amount}")
        for command_id, outcome in aggregate.outcomes().items():
            op = sent[command_id]
            amount = SIGN.get(op.command, 0) * op.amount
            if outcome == "ok":
                low, high = low + amount, high + amount
            elif outcome == "info":
                low, high = low + min(amount, 0), high + max(amount, 0)
    if not unknown and not low <= total <= high:
        violations.append(f"{total} is stored in all; the clients moved between {low} and {high}")
    checked = len(history.aggregates()) - len(unknown)
    return _verdict("MoneyConserved", violations, checked, unknown, f"accounts hold {total}, within [{low}, {high}]")


# -- liveness and non-vacuity: a run that proved nothing is no pass ---------------------------


def _progress_after_heal(history: History) -> Result:
    healed = history.run.healed_at
    if healed is None:
        return Result("ProgressAfterHeal", "fail", "the run recorded no heal")
    progressed = {op.aggregate for op in history.ops if op.outcome == "ok" and op.start >= healed}
    stuck = [a for a in history.ops_by_aggregate() if a not in progressed]
    if stuck:
        return Result("ProgressAfterHeal", "fail", f"no command accepted after the heal for {', '.join(stuck)}")
    return Result("ProgressAfterHeal", "pass", f"all {len(progressed)} aggregates accepted commands after the heal")


def _ownership_moved(history: History) -> Result:
    writers: dict[str, set[tuple[str | None, int | None]]] = defaultdict(set)
    for aggregate in _aggregates(history):
        for commit in aggregate.commits or ():
            writers[aggregate.name].add((commit.node, commit.epoch))
    nodes: dict[str, set[str]] = defaultdict(set)
    for activation in history.activations:
        nodes[activation.aggregate].add(activation.node)
    moved = {a for a, w in writers.items() if len(w) > 1} | {a for a, n in nodes.items() if len(n) > 1}
    if not moved:
        return Result("OwnershipMoved", "fail", "no aggregate changed owner: the faults tested no failover")
    return Result("OwnershipMoved", "pass", f"{len(moved)} aggregates changed owner")


def _faults_injected(history: History) -> Result:
    started = Counter(f.kind for f in history.faults if f.phase == "start")
    ended = Counter(f.kind for f in history.faults if f.phase == "end")
    if not started:
        return Result("FaultsInjected", "fail", "no fault was injected")
    if started != ended:
        return Result("FaultsInjected", "fail", f"injected {dict(started)} but healed {dict(ended)}")
    return Result("FaultsInjected", "pass", f"{sum(started.values())} faults: {dict(sorted(started.items()))}")


def minimum_ok_ops(least: int) -> Invariant:
    def invariant(history: History) -> Result:
        ok = sum(1 for op in history.ops if op.outcome == "ok")
        verdict: Verdict = "pass" if ok >= least else "fail"
        return Result("MinimumOkOps", verdict, f"{ok} commands acknowledged (at least {least} needed)")

    return invariant


INVARIANTS: tuple[Invariant, ...] = (
    _per_aggregate("NoLostAckedCommand", "aggregates keep every acknowledged command", _no_lost_acked),
    _per_aggregate("NoUnexpectedEvent", "aggregates hold only events of commands sent", _no_unexpected_event),
    _per_aggregate("NoDuplicateCommand", "aggregates apply each command once", _no_duplicate_command),
    _per_aggregate("ContiguousVersions", "aggregates have contiguous versions", _contiguous),
    _per_aggregate("FencedAppendExclusive", "aggregates give each version to one command", _fenced_exclusive),
    _per_aggregate("EpochMonotonic", "aggregates written under rising lease epochs", _epoch_monotonic),
    _replica_parity,
    _per_aggregate(
        "CountWithinBounds", "aggregates store between the acknowledged and the possible", _count_within_bounds
    ),
    _per_aggregate("RefusalsHold", "aggregates store no command that was refused", _refusals_hold),
    _money_conserved,
    _per_aggregate("NeverNegative", "accounts never below zero", _never_negative),
    _progress_after_heal,
    _ownership_moved,
    _faults_injected,
)


def check(history: History, *, min_ok: int = 50) -> list[Result]:
    """Every invariant's verdict on `history`, in a fixed order."""
    return [invariant(history) for invariant in (*INVARIANTS, minimum_ok_ops(min_ok))]


def summary(results: Sequence[Result]) -> str:
    """One line per invariant: verdict, name and detail."""
    return "\n".join(f"{r.verdict.upper():13} {r.name}: {r.detail}" for r in results)
