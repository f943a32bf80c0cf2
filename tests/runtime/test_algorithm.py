"""The command algorithm as pure functions: decided without NATS, without a clock, without an actor."""

from __future__ import annotations

import msgspec

from radix import wire
from radix.domain import Command
from radix.examples.inventory import CheckIn, CreateItem, ItemsCheckedIn, ItemsRemoved, ItemState, Remove, inventory
from radix.runtime import algorithm
from radix.runtime.dedup import command_digest
from radix.runtime.mailbox import Envelope
from radix.store.commit import Cause, Commit
from radix.wire.names import Address
from tests.gadgets import Corrupt, Explode, Poke, gadgets

CODEC = inventory.codec("InventoryItem")


def envelope(command: Command, command_id: str, *, expected: int | None = None) -> Envelope:
    return Envelope(
        command=command,
        type_name=type(command).__name__,
        command_id=command_id,
        expected_version=expected,
        issuer="ann",
        correlation_id="k",
        reply_to=None,
        subject="",
        payload=msgspec.json.encode(command),
        headers={},
    )


def stored(event: ItemsCheckedIn | ItemsRemoved, version: int) -> wire.RecordedEvent:
    data = CODEC.encode_event(event)
    return wire.RecordedEvent(type=data.type, schema=data.schema, version=version, data=data.data, command_id="x")


IN_STOCK = ItemState(name="w", count=5)  # at version 2


def test_a_batch_is_decided_in_turn_on_the_state_each_command_leaves() -> None:
    """Each command sees the state the ones before it left: a removal the check-in before it makes possible
    is accepted, one too many rejected; the events of the accepted ones make one commit, in order."""
    batch = [envelope(CheckIn(count=3), "a"), envelope(Remove(count=8), "b"), envelope(Remove(count=1), "c")]
    decision = algorithm.decide(CODEC, IN_STOCK, 2, batch, [])
    assert [(r.status, r.version) for r in decision.replies] == [("accepted", 3), ("accepted", 4), ("rejected", 4)]
    assert decision.replies[2].reason == "cannot remove 1: only 0 in stock"
    assert [CODEC.decode_event(e.type, e.schema, e.data) for e in decision.events] == [
        ItemsCheckedIn(count=3),
        ItemsRemoved(count=8),
    ]
    digests = [command_digest(e.payload) for e in batch]
    assert decision.causes == [Cause("a", "k", "ann", digests[0]), Cause("b", "k", "ann", digests[1])]
    assert decision.state == ItemState(name="w", count=0)
    assert decision.failures == []


def test_an_id_sent_twice_in_a_batch_has_one_outcome_but_not_with_another_body() -> None:
    """The same command twice in one batch is answered twice with its one outcome; its id reused for
    another command in the batch is an error naming the first outcome, and decides nothing."""
    batch = [envelope(CheckIn(count=3), "a"), envelope(CheckIn(count=3), "a"), envelope(Remove(count=5), "a")]
    decision = algorithm.decide(CODEC, IN_STOCK, 2, batch, [])
    first, again, reused = decision.replies
    assert (first.status, first.version) == (again.status, again.version) == ("accepted", 3)
    assert (reused.status, reused.version) == ("error", 3)
    assert "used before for another command (first outcome: accepted at version 3)" in (reused.reason or "")
    assert decision.state == ItemState(name="w", count=8)


def test_a_stale_command_is_checked_against_what_came_since() -> None:
    """Behind the aggregate, a command meets the aggregate's own conflict rule: a removal conflicts with a
    removal committed since (naming it), a check-in with nothing; ahead of it, a command is an error."""
    since = [stored(ItemsRemoved(count=1), 2)]
    conflict = algorithm.decide(CODEC, IN_STOCK, 2, [envelope(Remove(count=1), "r", expected=1)], since)
    (reply,) = conflict.replies
    assert (reply.status, reply.version, reply.conflicts) == ("conflict", 2, since)
    assert reply.reason == "1 item(s) were removed concurrently; check the stock and try again"
    assert conflict.events == []
    fine = algorithm.decide(CODEC, IN_STOCK, 2, [envelope(CheckIn(count=1), "i", expected=1)], since)
    assert fine.replies[0].status == "accepted"
    ahead = algorithm.decide(CODEC, IN_STOCK, 2, [envelope(CheckIn(count=1), "f", expected=3)], [])
    assert ahead.replies[0].status == "error"
    assert ahead.replies[0].reason is not None
    assert ahead.replies[0].reason.startswith("expected_version 3 is ahead of the aggregate's version 2")


def test_a_command_conflicts_with_what_its_batch_decided_before_it() -> None:
    """Events an earlier command of the same batch decided count as concurrent for a later, stale one."""
    batch = [envelope(Remove(count=1), "first"), envelope(Remove(count=1), "second", expected=2)]
    decision = algorithm.decide(CODEC, IN_STOCK, 2, batch, [])
    assert [r.status for r in decision.replies] == ["accepted", "conflict"]
    assert [e.command_id for e in decision.replies[1].conflicts] == ["first"]


def test_a_command_sent_twice_in_one_batch_has_one_outcome() -> None:
    """The second copy gets the first's reply, and writes nothing more."""
    batch = [envelope(CheckIn(count=1), "same"), envelope(CheckIn(count=1), "same")]
    decision = algorithm.decide(CODEC, IN_STOCK, 2, batch, [])
    assert decision.replies[0] is decision.replies[1]
    assert len(decision.events) == 1


def test_user_code_that_raises_is_an_error_reply_and_a_failure_to_log() -> None:
    """A `decide` that raises, or events `evolve` cannot apply, answer `error` and write nothing; the
    exception is handed back to be logged with its traceback, and the commands after it go on."""
    codec = gadgets.codec("Gadget")
    batch = [envelope(Explode(), "boom"), envelope(Corrupt(), "bad"), envelope(Poke(), "fine")]
    decision = algorithm.decide(codec, 0, 0, batch, [])
    assert [r.status for r in decision.replies] == ["error", "error", "accepted"]
    assert decision.replies[0].reason == "decide raised ZeroDivisionError('boom'): a bug in the aggregate's code"
    assert [(f.command_id, f.what, type(f.exception)) for f in decision.failures] == [
        ("boom", "decide raised", ZeroDivisionError),
        ("bad", "decide returned events that could not be applied", RuntimeError),
    ]
    assert [e.type for e in decision.events] == ["Poked"]
    assert decision.state == 1


def test_accepted_replies_take_their_events_from_the_commit() -> None:
    """Each accepted reply gets the events its command wrote, with their versions; the others stay as they are."""
    decision = algorithm.decide(
        CODEC, ItemState(), 0, [envelope(CreateItem(name="w"), "a"), envelope(Remove(count=1), "b")], []
    )
    address = Address("unit", "inventory", "InventoryItem", "w")
    event = decision.events[0]
    recorded = wire.RecordedEvent(type=event.type, schema=event.schema, version=1, data=event.data, command_id="a")
    replies = algorithm.accepted(decision.replies, Commit(address, 7, (recorded,)))
    assert replies[0] == wire.Reply(status="accepted", command_id="a", version=1, events=[recorded])
    assert replies[1] is decision.replies[1]


def test_replies_come_in_the_order_of_the_batch() -> None:
    """Replies decided now and those settled before (duplicates found on reload) are merged in batch order."""
    batch = [envelope(Poke(), "a"), envelope(Poke(), "b"), envelope(Poke(), "c")]
    settled = {"b": algorithm.error("b", "settled")}
    decided = [algorithm.error("a", "one"), algorithm.error("c", "three")]
    ordered = algorithm.in_order(batch, [batch[0], batch[2]], decided, settled)
    assert [r.reason for r in ordered] == ["one", "settled", "three"]
    assert msgspec.json.decode(wire.reply_encoder.encode(ordered[1]))["status"] == "error"
