"""Reading old majors through upcasters, and what a codec says of events it cannot read."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import msgspec
import pytest

from radix import BoundedContext, DecodeError, DefinitionError, InvalidEventError, UnreadableEventError, upcaster
from radix.domain import Aggregate, Command, Event, SchemaVersion
from radix.examples import inventory as v1
from radix.examples import inventory_v2 as v2


class ThingCommand(Command):
    pass


class Make(ThingCommand):
    pass


class ThingEvent(Event):
    pass


class Made(ThingEvent):
    """Three majors: 1 had `size` (cm), 2 `size_mm`, 3 a nested `dimensions`."""

    schema_version: ClassVar[SchemaVersion] = (3, 2)
    dimensions: dict[str, int]
    colour: str = "red"


class Thing(Aggregate[int, ThingCommand, ThingEvent]):
    def initial_state(self) -> int:
        return 0


class MadeV2(msgspec.Struct):
    """The shape of Made 2.x, kept to upcast from it with types."""

    size_mm: int


@upcaster(Made, from_major=1)
def to_millimetres(data: dict[str, Any]) -> dict[str, Any]:
    return {"size_mm": data["size"] * 10}


@upcaster(Made, from_major=2, reads=MadeV2)
def to_dimensions(old: MadeV2) -> dict[str, Any]:
    return {"dimensions": {"length": old.size_mm}}


def codec(*steps: Any) -> Any:
    return BoundedContext("things", [Thing()], upcasters=steps).codec("Thing")


def test_each_older_major_is_read_as_the_newest_through_the_chain() -> None:
    """Events of majors 1, 2 and 3 all decode to the code's Made 3.2; defaults fill fields the old data lacks."""
    c = codec(to_millimetres, to_dimensions)
    assert c.decode_event("Made", "1.0", b'{"size": 4}') == Made(dimensions={"length": 40})
    assert c.decode_event("Made", "2.5", b'{"size_mm": 7, "extra": true}') == Made(dimensions={"length": 7})
    assert c.decode_event("Made", "3.0", b'{"dimensions": {"w": 1}}') == Made(dimensions={"w": 1})
    assert c.unreadable("Made", "1.3") is None


def test_a_missing_step_names_the_type_and_the_majors() -> None:
    """Without the step from 2 to 3, majors 1 and 2 are unreadable, each saying which upcaster to declare."""
    c = codec(to_millimetres)
    with pytest.raises(UnreadableEventError, match=r"reads Made 3\.x and has no upcaster from major 2 to 3") as e:
        c.decode_event("Made", "1.0", b'{"size": 4}')
    assert e.value.deploy == "declares an upcaster of Made from major 2 (docs/evolving-events.md)"
    assert str(c.unreadable("Made", "2.0")).endswith("deploy code that " + e.value.deploy)
    assert c.decode_event("Made", "3.1", b'{"dimensions": {}}') == Made(dimensions={})


def test_a_newer_major_or_an_unknown_type_says_what_code_to_deploy() -> None:
    """Code on 3.x cannot read 4.0, nor a type it does not have: each error says what code would."""
    c = codec(to_millimetres, to_dimensions)
    problem = c.unreadable("Made", "4.0")
    assert problem is not None
    assert problem.deploy == "reads Made 4.x"
    unknown = c.unreadable("Unmade", "1.0")
    assert unknown is not None
    assert unknown.deploy == "knows Unmade"
    assert c.unreadable("Made", "x.y") is not None


def test_an_upcaster_that_fails_or_gives_the_wrong_shape_is_named() -> None:
    """A step that raises, or a chain whose result does not fit the newest type, is an error naming the step."""

    @upcaster(Made, from_major=2)
    def broken(data: dict[str, Any]) -> dict[str, Any]:
        return {"dimensions": data["missing"]}

    @upcaster(Made, from_major=2)
    def misshapen(data: dict[str, Any]) -> dict[str, Any]:
        return {"dimensions": "not a dict"}

    with pytest.raises(UnreadableEventError, match=r"the upcaster .*broken failed on a stored Made 2\.x"):
        codec(broken).decode_event("Made", "2.0", b'{"size_mm": 1}')
    with pytest.raises(UnreadableEventError, match=r"Made 2.0 upcast to 3.2 does not fit Made .*misshapen"):
        codec(misshapen).decode_event("Made", "2.0", b'{"size_mm": 1}')
    with pytest.raises(DecodeError, match=r"invalid Made 1\.0 event data"):
        codec(to_millimetres, to_dimensions).decode_event("Made", "1.0", b"[1")


def test_upcasters_are_checked_where_they_are_declared() -> None:
    """An upcaster from the newest major or beyond, two for one step, or one for a type the context does
    not have, are definition errors."""
    with pytest.raises(DefinitionError, match="goes from an older major"):
        upcaster(Made, from_major=3)(to_millimetres.step)
    with pytest.raises(DefinitionError, match="two upcasters read Made from major 1"):
        codec(to_millimetres, upcaster(Made, from_major=1)(to_millimetres.step))
    with pytest.raises(DefinitionError, match="not an event type of context 'things'"):
        BoundedContext("things", [Thing()], upcasters=[v2.titled])


def test_the_inventory_example_reads_its_first_version() -> None:
    """Inventory 2.0 reads what inventory 1.0 wrote: the name is the title, the unit 'each'."""
    written = v1.inventory.codec("InventoryItem").encode_event(v1.ItemCreated(name="widget"))
    read = v2.inventory.codec("InventoryItem").decode_event(written.type, written.schema, written.data)
    assert read == v2.ItemCreated(title="widget", unit="each")


def test_an_event_that_would_not_read_back_is_refused_when_encoded() -> None:
    """msgspec does not check field types on construction: the codec does, before anything is stored."""
    c = v1.inventory.codec("InventoryItem")
    with pytest.raises(InvalidEventError, match=r"ItemsCheckedIn 1.0 as decided does not fit its declared fields"):
        c.encode_event(v1.ItemsCheckedIn(count="3"))  # type: ignore[arg-type]
    assert c.encode_event(v1.ItemsCheckedIn(count=3)).schema == "1.0"


def test_schema_versions_are_checked() -> None:
    """A schema version is (major, minor), whole numbers, major from 1."""

    class OddEvent(Event):
        pass

    class Odd(OddEvent):
        schema_version: ClassVar[SchemaVersion] = (0, 1)

    class Oddity(Aggregate[int, ThingCommand, OddEvent]):
        pass

    with pytest.raises(DefinitionError, match=r"Odd.schema_version is \(0, 1\)"):
        BoundedContext("odd", [Oddity()])


@pytest.mark.parametrize("setting", ["forbid_unknown_fields", "omit_defaults"])
def test_struct_settings_that_break_minor_compatibility_are_refused(setting: str) -> None:
    """Code one minor behind must read unknown fields; code one minor on must find the fields it requires."""

    class Strict(Event, **{setting: True}):
        pass

    class Thing(Aggregate[int, Command, Strict]):
        def decide(self, state: int, command: Command) -> Sequence[Strict]:
            return []

    with pytest.raises(DefinitionError, match=f"Strict sets {setting}=True"):
        BoundedContext("strict", [Thing()])
