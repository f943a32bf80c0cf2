"""The bank example: accounts that are opened, take deposits and allow withdrawals without overdraft.

Its invariants are easy to check from outside, which makes it the subject of fault tests:
a balance is never negative, and money is conserved (every balance is the sum of its
deposits minus its withdrawals). Concurrency rule: a concurrent deposit never conflicts; a
concurrent withdrawal conflicts with a `Withdraw`, whose issuer decided on a balance that no
longer holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import msgspec

from radix.domain import Aggregate, BoundedContext, Command, Event
from radix.errors import DomainError

Amount = Annotated[int, msgspec.Meta(gt=0, le=1_000_000_000)]


class BankCommand(Command):
    """Commands of the bank context."""


class AccountCommand(BankCommand):
    """Commands to one account."""


class Open(AccountCommand):
    owner: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class Deposit(AccountCommand):
    amount: Amount


class Withdraw(AccountCommand):
    amount: Amount


class BankEvent(Event):
    """Events of the bank context."""


class AccountEvent(BankEvent):
    """Events of one account."""


class Opened(AccountEvent):
    owner: str


class Deposited(AccountEvent):
    amount: int


class Withdrawn(AccountEvent):
    amount: int


class Balance(msgspec.Struct, frozen=True):
    """An account's state; `owner` is None until it is opened."""

    owner: str | None = None
    balance: int = 0


class Account(Aggregate[Balance, AccountCommand, AccountEvent]):
    """A bank account: no overdraft."""

    def initial_state(self) -> Balance:
        return Balance()

    def evolve(self, state: Balance, event: AccountEvent) -> Balance:
        match event:
            case Opened(owner=owner):
                return Balance(owner=owner, balance=state.balance)
            case Deposited(amount=amount):
                return Balance(owner=state.owner, balance=state.balance + amount)
            case Withdrawn(amount=amount):
                return Balance(owner=state.owner, balance=state.balance - amount)
        return state

    def decide(self, state: Balance, command: AccountCommand) -> Sequence[AccountEvent]:
        match command:
            case Open(owner=owner):
                if state.owner is not None:
                    raise DomainError(f"the account is already open for {state.owner!r}")
                return [Opened(owner=owner)]
            case Deposit(amount=amount):
                if state.owner is None:
                    raise DomainError("the account is not open")
                return [Deposited(amount=amount)]
            case Withdraw(amount=amount):
                if state.owner is None:
                    raise DomainError("the account is not open")
                if amount > state.balance:
                    raise DomainError(f"cannot withdraw {amount}: the balance is {state.balance}")
                return [Withdrawn(amount=amount)]
        raise DomainError(f"{type(command).__name__} is not handled")

    def conflicts(self, command: AccountCommand, concurrent: Sequence[AccountEvent]) -> str | None:
        if isinstance(command, Withdraw):
            withdrawn = sum(e.amount for e in concurrent if isinstance(e, Withdrawn))
            if withdrawn:
                return f"{withdrawn} was withdrawn concurrently; check the balance and try again"
        return None


bank = BoundedContext("bank", [Account()])
