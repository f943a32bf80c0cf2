"""Given/when/then on one aggregate type, through the real command algorithm, and what a failing one says."""

from __future__ import annotations

import pytest

from radix.examples.bank import Account, Balance, Deposit, Deposited, Open, Opened, Withdraw, Withdrawn
from radix.testing import ScenarioError, scenario

OPEN = scenario(Account()).given(Opened(owner="ann"), Deposited(amount=10))


def test_given_events_when_a_command_then_its_events_and_state() -> None:
    """A command decided on the state the given events leave gives its events and the state after them."""
    outcome = OPEN.when(Withdraw(amount=4)).then(Withdrawn(amount=4)).then_state(Balance(owner="ann", balance=6))
    assert outcome.reply.version == 3
    assert OPEN.state == Balance(owner="ann", balance=10)  # a scenario is a value: `when` changes nothing


def test_a_rejection_and_its_reason() -> None:
    """The aggregate's `DomainError` is a rejection whose reason the scenario can check; the state stays."""
    OPEN.when(Withdraw(amount=25)).then_rejected("cannot withdraw 25").then_state(OPEN.state)
    scenario(Account()).when(Deposit(amount=1)).then_rejected("not open")


def test_a_conflict_with_what_came_after_the_version_the_issuer_saw() -> None:
    """A command sent with an older `expected_version` is checked with the aggregate's conflict rule."""
    withdrawn = OPEN.given(Withdrawn(amount=3))
    conflict = withdrawn.when(Withdraw(amount=1), expected_version=2).then_conflict("3 was withdrawn concurrently")
    assert conflict.conflicts == [Withdrawn(amount=3)]
    withdrawn.when(Deposit(amount=1), expected_version=2).then(Deposited(amount=1))  # a deposit commutes


def test_a_failed_expectation_says_what_came_instead() -> None:
    """Each `then` that does not hold raises a `ScenarioError` (an AssertionError) naming what happened."""
    with pytest.raises(ScenarioError, match=r"should have given \[Withdrawn\(amount=5\)\], but it was rejected: "):
        OPEN.when(Withdraw(amount=50)).then(Withdrawn(amount=5))
    with pytest.raises(ScenarioError, match=r"should have been rejected, but it was accepted with \[Withdrawn"):
        OPEN.when(Withdraw(amount=5)).then_rejected()
    with pytest.raises(
        ScenarioError, match=r"should have been conflict with a reason holding 'x', but it was rejected"
    ):
        OPEN.when(Open(owner="bob")).then_conflict("x")
    with pytest.raises(ScenarioError, match=r"the state should be .* but it is Balance\(owner='ann', balance=5\)"):
        OPEN.when(Withdraw(amount=5)).then_state(Balance())
    assert issubclass(ScenarioError, AssertionError)
