"""Refusal records: one contract for the in-memory twin and the KV bucket, and a refusal too large for its
share of the record cut to fit, and no further."""

from __future__ import annotations

import msgspec
import pytest
from nats.aio.client import Client as NATS

from radix import Address, wire
from radix.errors import KeyChangedError
from radix.store import InMemoryRefusalStore, KVRefusalStore, RefusalStore
from radix.store.refusals import fence, fitted


def refused(command_id: str) -> wire.Reply:
    return wire.Reply(status=wire.REJECTED, command_id=command_id, version=3, reason=f"no to {command_id}")


class RefusalContract:
    """The behaviour every `RefusalStore` must have; subclasses provide `refusals`."""

    @pytest.fixture
    def address(self, namespace: str) -> Address:
        return Address(namespace, "shop", "Cart", "cart-1")

    async def test_an_aggregate_without_refusals_has_an_empty_record(
        self, refusals: RefusalStore, address: Address
    ) -> None:
        """No record yet: no replies, at revision 0 (what the first save expects)."""
        recorded = await refusals.load(address)
        assert (recorded.replies, recorded.revision) == ([], 0)

    async def test_a_record_is_written_by_compare_and_set(self, refusals: RefusalStore, address: Address) -> None:
        """A save at the record's revision writes it and gives the new revision; one at an old revision is
        refused with the revision the record is at."""
        first = await refusals.save(address, [refused("a")], revision=0)
        assert first > 0
        second = await refusals.save(address, [refused("a"), refused("b")], revision=first)
        assert second > first
        recorded = await refusals.load(address)
        assert (recorded.replies, recorded.revision) == ([refused("a"), refused("b")], second)
        with pytest.raises(KeyChangedError) as changed:
            await refusals.save(address, [refused("c")], revision=first)
        assert changed.value.revision == second
        assert (await refusals.load(address)).replies == [refused("a"), refused("b")]

    async def test_a_fence_keeps_the_record_and_shuts_out_the_former_writer(
        self, refusals: RefusalStore, address: Address
    ) -> None:
        """A node taking the aggregate over rewrites the record as it is: the former owner's next save fails."""
        before = await refusals.save(address, [refused("a")], revision=0)
        fenced = await fence(refusals, address)
        assert fenced.replies == [refused("a")]
        assert fenced.revision > before
        with pytest.raises(KeyChangedError):
            await refusals.save(address, [refused("a"), refused("late")], revision=before)
        assert (await refusals.load(address)).replies == [refused("a")]


class TestInMemoryRefusalStore(RefusalContract):
    @pytest.fixture
    def refusals(self) -> RefusalStore:
        return InMemoryRefusalStore()


class TestKVRefusalStore(RefusalContract):
    @pytest.fixture
    def refusals(self, nc: NATS) -> RefusalStore:
        return KVRefusalStore(nc)


def test_a_refusal_is_cut_to_its_budget_and_no_further() -> None:
    """`fitted` keeps the first conflicting events that fit the budget, one more would not, and counts the rest."""
    text = msgspec.Raw(b'"' + b"x" * 500 + b'"')
    events = [wire.RecordedEvent("Scribbled", "1.0", v, text, "c") for v in range(1, 41)]
    reply = wire.Reply(status=wire.CONFLICT, command_id="late", version=40, reason="r", conflicts=events)
    assert fitted(reply, 100_000) is reply
    for budget in (300, 2_000, 10_000):
        cut = fitted(reply, budget)
        kept = len(cut.conflicts)
        assert len(wire.reply_encoder.encode(cut)) <= budget
        assert (cut.conflicts, cut.conflicts_omitted) == (events[:kept], 40 - kept)
        more = msgspec.structs.replace(cut, conflicts=events[: kept + 1], conflicts_omitted=39 - kept)
        assert len(wire.reply_encoder.encode(more)) > budget
