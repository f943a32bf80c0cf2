"""The in-memory runtime: a context through the real actors and command algorithm, on in-memory twins."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from radix import (
    ActorConfig,
    CommandConflictError,
    CommandFailedError,
    CommandRejectedError,
    CommandTimeoutError,
    RadixError,
    SchemaError,
)
from radix.examples import inventory_v2
from radix.examples.bank import Balance, Deposit, Deposited, Open, Opened, Withdraw, Withdrawn, bank
from radix.examples.inventory import CheckIn, CreateItem, ItemsCheckedIn, inventory
from radix.testing import InMemoryRuntime, eventually
from tests import evolved


async def test_commands_are_decided_written_and_answered() -> None:
    """Accepted commands come back with their versions and events, and the history holds them in order."""
    async with InMemoryRuntime([bank]) as runtime:
        opened = await runtime.send(Open(owner="ann"), aggregate_id="acc-1")
        assert (opened.version, opened.events) == (1, (Opened(owner="ann"),))
        await runtime.send(Deposit(amount=10), aggregate_id="acc-1", issuer="ann")
        assert (await runtime.send(Withdraw(amount=4), aggregate_id="acc-1")).version == 3
        assert await runtime.history("Account", "acc-1") == [
            Opened(owner="ann"),
            Deposited(amount=10),
            Withdrawn(amount=4),
        ]
        with pytest.raises(CommandRejectedError, match="cannot withdraw 50: the balance is 6"):
            await runtime.send(Withdraw(amount=50), aggregate_id="acc-1")


async def test_a_command_sent_again_is_answered_as_first_and_applied_once() -> None:
    """The same command id gets the first outcome, accepted or refused, and writes nothing more."""
    async with InMemoryRuntime([bank]) as runtime:
        await runtime.send(Open(owner="ann"), aggregate_id="acc-2")
        first = await runtime.send(Deposit(amount=5), aggregate_id="acc-2", command_id="dep-1")
        assert await runtime.send(Deposit(amount=5), aggregate_id="acc-2", command_id="dep-1") == first
        with pytest.raises(CommandRejectedError):
            await runtime.send(Withdraw(amount=9), aggregate_id="acc-2", command_id="too-much")
        await runtime.send(Deposit(amount=10), aggregate_id="acc-2")
        with pytest.raises(CommandRejectedError):  # refused again, though the balance would allow it now
            await runtime.send(Withdraw(amount=9), aggregate_id="acc-2", command_id="too-much")
        assert len(await runtime.history("Account", "acc-2")) == 3
        assert [e.duplicate for e in runtime.command_log] == [False, False, True, False, False, True]


async def test_a_stale_command_meets_the_conflict_rule() -> None:
    """`expected_version` behind the aggregate: the aggregate's `conflicts` decides, with the events since."""
    async with InMemoryRuntime([bank]) as runtime:
        await runtime.send(Open(owner="ann"), aggregate_id="acc-3")
        await runtime.send(Deposit(amount=10), aggregate_id="acc-3")
        await runtime.send(Withdraw(amount=3), aggregate_id="acc-3")
        with pytest.raises(CommandConflictError, match="3 was withdrawn concurrently") as conflict:
            await runtime.send(Withdraw(amount=1), aggregate_id="acc-3", expected_version=2)
        assert conflict.value.conflicts == (Withdrawn(amount=3),)
        assert (await runtime.send(Deposit(amount=1), aggregate_id="acc-3", expected_version=2)).version == 4
        with pytest.raises(CommandFailedError, match="ahead of the aggregate's version 4"):
            await runtime.send(Deposit(amount=1), aggregate_id="acc-3", expected_version=9)


async def test_commands_sent_together_are_decided_in_turn() -> None:
    """Concurrent commands to one aggregate queue in its mailbox and are decided one after another."""
    async with InMemoryRuntime([inventory]) as runtime:
        await runtime.send(CreateItem(name="w"), aggregate_id="sku-1")
        results = await asyncio.gather(*(runtime.send(CheckIn(count=1), aggregate_id="sku-1") for _ in range(50)))
        assert sorted(r.version for r in results) == list(range(2, 52))
        history = await runtime.history("InventoryItem", "sku-1")
        assert history[1:] == [ItemsCheckedIn(count=1)] * 50


async def test_a_passivated_aggregate_comes_back_from_its_snapshot_and_events() -> None:
    """After passivation the next command rehydrates the aggregate (snapshot + events) with its state and
    the ids it applied."""
    async with InMemoryRuntime([inventory], config=ActorConfig(snapshot_every=5)) as runtime:
        await runtime.send(CreateItem(name="w"), aggregate_id="sku-2")
        for n in range(7):
            await runtime.send(CheckIn(count=1), aggregate_id="sku-2", command_id=f"in-{n}")
        await runtime.passivate()
        assert runtime.live == 0
        assert runtime.stats.snapshots_written >= 1
        again = await runtime.send(CheckIn(count=1), aggregate_id="sku-2", command_id="in-3")
        assert again.version == 5  # the original answer, not a new check-in
        assert (runtime.stats.activations, runtime.stats.snapshots_loaded) == (2, 1)
        assert (await runtime.send(CheckIn(count=1), aggregate_id="sku-2")).version == 9


async def test_a_command_of_no_context_it_runs_is_refused() -> None:
    """The runtime says which contexts it runs when a command belongs to none of them."""
    async with InMemoryRuntime([bank]) as runtime:
        with pytest.raises(RadixError, match="CheckIn is a command of none of bank"):
            await runtime.send(CheckIn(count=1), aggregate_id="x")


async def test_an_aggregate_is_read_as_a_node_reads_it() -> None:
    """A read through the in-memory runtime answers the version and typed state after what came before it."""
    async with InMemoryRuntime([bank]) as runtime:
        assert (await runtime.read("Account", "acc-9")).version == 0
        await runtime.send(Open(owner="ann"), aggregate_id="acc-9")
        await runtime.send(Deposit(amount=7), aggregate_id="acc-9")
        read = await runtime.read("Account", "acc-9")
        assert (read.version, read.state) == (2, Balance(owner="ann", balance=7))


async def test_idle_aggregates_passivate_on_their_own_and_come_back() -> None:
    """An aggregate idle for `idle_timeout` passivates without being asked, as on a node; the next command
    rehydrates it."""
    async with InMemoryRuntime([inventory], config=ActorConfig(idle_timeout=0.1)) as runtime:
        await runtime.send(CreateItem(name="w"), aggregate_id="sku-3")
        assert runtime.live == 1
        await eventually(lambda: runtime.live == 0, timeout=5.0, what="the idle aggregate passivated")
        assert (await runtime.send(CheckIn(count=2), aggregate_id="sku-3")).version == 2
        assert runtime.stats.activations == 2


async def test_a_stalled_store_times_the_command_out_and_a_retry_applies_it_once() -> None:
    """No answer within the runtime's timeout raises `CommandTimeoutError`, as a client does; once the store
    moves again, sending with the same command id answers the one outcome."""
    async with InMemoryRuntime([inventory], timeout=0.2) as runtime:
        await runtime.send(CreateItem(name="w"), aggregate_id="sku-4")
        moving = asyncio.Event()
        append = runtime.events.append

        async def stalled(*args: Any, **kwargs: Any) -> Any:
            await moving.wait()
            return await append(*args, **kwargs)

        runtime.events.append = stalled  # type: ignore[method-assign]
        with pytest.raises(CommandTimeoutError, match="ci-1"):
            await runtime.send(CheckIn(count=1), aggregate_id="sku-4", command_id="ci-1")
        moving.set()
        assert (await runtime.send(CheckIn(count=1), aggregate_id="sku-4", command_id="ci-1")).version == 2
        assert (await runtime.read("InventoryItem", "sku-4")).version == 2


async def test_a_successor_runs_other_code_on_the_same_stores() -> None:
    """What a deployment finds: 2.0 code reads what 1.0 wrote through its upcaster; 1.0 code, rolled back,
    refuses an aggregate holding 2.0 events; code that breaks the registry's rules does not start."""
    async with InMemoryRuntime([inventory], config=ActorConfig(snapshot_every=1)) as v1:
        await v1.send(CreateItem(name="widget"), aggregate_id="sku-1")
    async with v1.successor([inventory_v2.inventory]) as v2:
        assert (await v2.read("InventoryItem", "sku-1")).state == inventory_v2.Item("widget", "each", 0)
        await v2.send(inventory_v2.CreateItem(title="bolt"), aggregate_id="sku-2")
    async with v2.successor([inventory]) as back:
        assert (await back.send(CheckIn(count=1), aggregate_id="sku-1")).version == 2
        with pytest.raises(CommandFailedError, match=r"deploy code that reads ItemCreated 2\.x"):
            await back.send(CheckIn(count=1), aggregate_id="sku-2")
    with pytest.raises(SchemaError, match="field 'note' added"):
        await back.successor([evolved.with_note]).start()
