"""The bank example: no overdraft, money conserved, on its own and served by a node."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nats.aio.client import Client as NATS

from radix import Client, CommandRejectedError, DomainError, Node
from radix.examples.bank import Account, AccountCommand, Deposit, Deposited, Open, Withdraw, Withdrawn, bank


@given(
    st.lists(
        st.one_of(st.builds(Deposit, amount=st.integers(1, 100)), st.builds(Withdraw, amount=st.integers(1, 100))),
        max_size=50,
    )
)
def test_balance_is_never_negative_and_money_is_conserved(commands: list[AccountCommand]) -> None:
    """Whatever arrives, the balance is deposits minus withdrawals and never below zero."""
    account = Account()
    state = account.evolve(account.initial_state(), account.decide(account.initial_state(), Open(owner="ann"))[0])
    moved = 0
    for command in commands:
        try:
            events = account.decide(state, command)
        except DomainError:
            continue
        for event in events:
            state = account.evolve(state, event)
            moved += (
                event.amount if isinstance(event, Deposited) else -event.amount if isinstance(event, Withdrawn) else 0
            )
        assert state.balance == moved >= 0


def test_concurrent_withdrawal_conflicts_with_a_withdraw_only() -> None:
    """A deposit never conflicts; a withdrawal made meanwhile conflicts with a Withdraw."""
    account = Account()
    assert account.conflicts(Deposit(amount=1), [Withdrawn(amount=5)]) is None
    assert account.conflicts(Withdraw(amount=1), [Deposited(amount=5)]) is None
    assert account.conflicts(Withdraw(amount=1), [Withdrawn(amount=5)]) == (
        "5 was withdrawn concurrently; check the balance and try again"
    )


async def test_racing_withdrawals_never_overdraw(nc: NATS, namespace: str) -> None:
    """Twenty withdrawals of 10 race on a balance of 100: exactly ten succeed, the balance ends at 0."""
    async with Node({namespace: [bank]}, nats=nc):
        client = Client(nc, bank, namespace=namespace)
        await client.send(Open(owner="ann"), aggregate_id="acc-1")
        await client.send(Deposit(amount=100), aggregate_id="acc-1")
        results = await asyncio.gather(
            *(client.send(Withdraw(amount=10), aggregate_id="acc-1") for _ in range(20)), return_exceptions=True
        )
        assert sum(1 for r in results if not isinstance(r, BaseException)) == 10
        assert all(isinstance(r, CommandRejectedError) for r in results if isinstance(r, BaseException))
        with pytest.raises(CommandRejectedError, match="the balance is 0"):
            await client.send(Withdraw(amount=1), aggregate_id="acc-1")
