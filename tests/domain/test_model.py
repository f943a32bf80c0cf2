"""The domain model: sum types, codecs and the inventory example, with plain function calls."""

from __future__ import annotations

import ast
import pathlib
from collections.abc import Sequence
from typing import ClassVar

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from radix import (
    Aggregate,
    BoundedContext,
    Command,
    DecodeError,
    DomainError,
    Event,
    UnknownTypeError,
    UnreadableEventError,
)
from radix.domain import AggregateCodec, leaf_types
from radix.examples.inventory import (
    CheckIn,
    CreateItem,
    InventoryItem,
    InventoryItemCommand,
    InventoryItemEvent,
    ItemCreated,
    ItemsCheckedIn,
    ItemsRemoved,
    ItemState,
    Remove,
    inventory,
)


class AccountCommand(Command):
    pass


class Open(AccountCommand):
    owner: str


class AccountEvent(Event):
    pass


class Opened(AccountEvent):
    schema_version: ClassVar[tuple[int, int]] = (2, 1)
    owner: str


class Account(Aggregate[bool, AccountCommand, AccountEvent]):
    def initial_state(self) -> bool:
        return False

    def evolve(self, state: bool, event: AccountEvent) -> bool:
        return True

    def decide(self, state: bool, command: AccountCommand) -> Sequence[AccountEvent]:
        return [Opened(owner="x")]


two_aggregates = BoundedContext("bank", [InventoryItem(), Account()])


def codec() -> AggregateCodec:
    return inventory.codec("InventoryItem")


def test_commands_form_a_sum_type() -> None:
    """The leaves of an aggregate's command hierarchy are its commands; categories are not."""
    assert leaf_types(InventoryItemCommand) == (CheckIn, CreateItem, Remove)
    assert codec().command_names == ("CheckIn", "CreateItem", "Remove")
    assert sorted(codec().event_types) == ["ItemCreated", "ItemsCheckedIn", "ItemsRemoved"]


def test_command_round_trip() -> None:
    """A command's JSON carries its tag and decodes to exactly that member."""
    payload = msgspec.json.encode(CheckIn(count=3))
    assert payload == b'{"type":"CheckIn","count":3}'
    assert codec().decode_command(payload) == CheckIn(count=3)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"{not json", "malformed command payload"),
        (b"[1, 2]", "Expected `object`"),
        (b'{"count": 3}', "missing required field `type`"),
        (b'{"type": "CheckIn", "count": "three"}', "Expected `int`, got `str` - at `$.count`"),
        (b'{"type": "CheckIn", "count": 0}', "Expected `int` >= 1"),
        (b'{"type": "CheckIn", "count": 1, "extra": 1}', "unknown field `extra`"),
        (b'{"type": "CreateItem", "name": ""}', "length >= 1"),
        # Nested 100,000 deep: msgspec's RecursionError escaped, and the command was never answered.
        (b'{"type": "CheckIn", "count": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "Expected `int`, got `array`"),
        (b'{"type": "CheckIn", "count": 1, "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "unknown field `x`"),
        (b'{"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nests too deep to read"),
    ],
)
def test_bad_command_payloads_are_clear_errors(payload: bytes, expected: str) -> None:
    """Malformed or mistyped payloads raise DecodeError saying what is wrong."""
    with pytest.raises(DecodeError) as info:
        codec().decode_command(payload)
    assert expected in str(info.value)


def test_unknown_command_type_lists_the_known_ones() -> None:
    """An unknown command type names the expected ones."""
    with pytest.raises(UnknownTypeError) as info:
        codec().decode_command(b'{"type": "Teleport"}')
    assert info.value.type_name == "Teleport"
    assert info.value.expected == ("CheckIn", "CreateItem", "Remove")
    assert "expected one of CheckIn, CreateItem, Remove" in str(info.value)


def test_command_of_another_aggregate_says_whose_it_is() -> None:
    """A command sent to the wrong aggregate type says which aggregate it belongs to."""
    with pytest.raises(UnknownTypeError, match="it belongs to Account"):
        two_aggregates.codec("InventoryItem").decode_command(b'{"type": "Open", "owner": "me"}')


def test_event_round_trip_with_schema_version() -> None:
    """Events are stored with type name and `major.minor` schema, and decode back."""
    c = two_aggregates.codec("Account")
    data = c.encode_event(Opened(owner="ann"))
    assert (data.type, data.schema, bytes(data.data)) == ("Opened", "2.1", b'{"owner":"ann"}')
    assert c.decode_event("Opened", "2.0", data.data) == Opened(owner="ann")
    assert c.decode_event("Opened", "2.7", b'{"owner":"ann","new_field":1}') == Opened(owner="ann")


def test_event_decoding_errors() -> None:
    """An unknown event type, a newer major version, or bad data are clear errors; the first two say what
    code to deploy."""
    c = two_aggregates.codec("Account")
    with pytest.raises(UnreadableEventError, match=r"no such event type .*: deploy code that knows Closed"):
        c.decode_event("Closed", "1.0", b"{}")
    newer = r"Opened 3\.0 is stored, but this code reads Opened up to 2\.x"
    with pytest.raises(UnreadableEventError, match=newer) as e:
        c.decode_event("Opened", "3.0", b'{"owner":"ann"}')
    assert (e.value.type_name, e.value.schema, e.value.deploy) == ("Opened", "3.0", "reads Opened 3.x")
    with pytest.raises(DecodeError, match="invalid Opened event data"):
        c.decode_event("Opened", "2.0", b'{"owner": 5}')


def test_encoding_another_aggregates_event_is_refused() -> None:
    """An aggregate cannot store another aggregate's event type."""
    with pytest.raises(TypeError, match="not an event type of InventoryItem"):
        codec().encode_event(Opened(owner="x"))


def test_context_rejects_unknown_aggregate_type() -> None:
    """Asking a context for an aggregate type it does not have names the ones it has."""
    with pytest.raises(ValueError, match="has InventoryItem"):
        inventory.codec("Nope")


def test_context_names_are_validated() -> None:
    """A context name must be usable in subjects and stream names."""
    with pytest.raises(ValueError, match="invalid context"):
        BoundedContext("My.Context", [InventoryItem()])


def test_inventory_rules() -> None:
    """Items must exist before stock moves, and stock never goes below zero."""
    item = InventoryItem()
    state = item.initial_state()
    with pytest.raises(DomainError, match="does not exist"):
        item.decide(state, CheckIn(count=1))
    with pytest.raises(DomainError, match="does not exist"):
        item.decide(state, Remove(count=1))
    for event in item.decide(state, CreateItem(name="widget")):
        state = item.evolve(state, event)
    with pytest.raises(DomainError, match="already exists"):
        item.decide(state, CreateItem(name="again"))
    for event in item.decide(state, CheckIn(count=5)):
        state = item.evolve(state, event)
    assert state == ItemState(name="widget", count=5)
    with pytest.raises(DomainError, match="only 5 in stock") as info:
        item.decide(state, Remove(count=6))
    assert info.value.reason == "cannot remove 6: only 5 in stock"
    assert item.decide(state, Remove(count=5)) == [ItemsRemoved(count=5)]


def test_inventory_conflict_rule() -> None:
    """A concurrent check-in conflicts with nothing; a concurrent removal conflicts with a Remove."""
    item = InventoryItem()
    checked_in: list[InventoryItemEvent] = [ItemsCheckedIn(count=2)]
    removed: list[InventoryItemEvent] = [ItemsRemoved(count=1)]
    assert item.conflicts(Remove(count=1), checked_in) is None
    assert item.conflicts(CheckIn(count=1), removed) is None
    assert item.conflicts(Remove(count=1), removed) is not None
    assert item.conflicts(Remove(count=1), [*checked_in, *removed]) == (
        "1 item(s) were removed concurrently; check the stock and try again"
    )


def test_default_conflict_rule_is_any_concurrent_event() -> None:
    """Without a rule of its own, an aggregate treats every concurrent event as a conflict."""
    account = Account()
    assert account.conflicts(Open(owner="a"), []) is None
    assert account.conflicts(Open(owner="a"), [Opened(owner="b")]) == (
        "1 event(s) were committed since the version you saw (Opened)"
    )


operations = st.lists(
    st.one_of(
        st.builds(CheckIn, count=st.integers(1, 50)),
        st.builds(Remove, count=st.integers(1, 50)),
        st.builds(CreateItem, name=st.text(min_size=1, max_size=5)),
    ),
    max_size=40,
)


@given(operations)
def test_stock_is_never_negative(commands: list[InventoryItemCommand]) -> None:
    """Whatever commands arrive, accepted ones keep the count at checked-in minus removed, never below 0."""
    item = InventoryItem()
    state = item.initial_state()
    expected = 0
    for command in commands:
        try:
            events = item.decide(state, command)
        except DomainError:
            continue
        for event in events:
            state = item.evolve(state, event)
            if isinstance(event, ItemsCheckedIn):
                expected += event.count
            elif isinstance(event, ItemsRemoved):
                expected -= event.count
            else:
                assert isinstance(event, ItemCreated)
        assert state.count == expected >= 0


def test_domain_modules_are_pure() -> None:
    """What users write a context with imports neither asyncio nor nats."""
    root = pathlib.Path(__file__).parents[2] / "radix"
    domain = sorted(str(p.relative_to(root)) for p in (root / "domain").glob("*.py"))
    assert "domain/schemas.py" in domain
    for module in (*domain, "errors.py", "wire/names.py", "examples/inventory.py", "examples/bank.py"):
        tree = ast.parse((root / module).read_text())
        imported = {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom)
            for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])
        }
        assert not imported & {"asyncio", "nats"}, module
