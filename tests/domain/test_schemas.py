"""Event schemas: what changes a shape, and the rules a new minor must keep."""

from __future__ import annotations

import dataclasses
from typing import ClassVar, cast

import msgspec

from radix.domain import Event
from radix.domain.schemas import EventSchema, differences, incompatibilities, problems, schema_of, schemas_of
from radix.examples import inventory as v1
from radix.examples import inventory_v1_1 as v1_1
from radix.examples import inventory_v2 as v2


class Size(msgspec.Struct):
    width: int


class Placed(Event):
    """The first shape."""

    where: str
    size: Size
    quantity: int = 1


class Resized(msgspec.Struct):
    """A nested struct renamed, its docstring changed: the same shape."""

    width: int


class PlacedAgain(Event):
    """Another docstring, another class name for the nested struct: still the same shape."""

    event_type: ClassVar[str | None] = "Placed"
    where: str
    size: Resized
    quantity: int = 1


def placed(**fields: type | tuple[type, object]) -> EventSchema:
    """A `Placed` 1.1 with these fields, as a registry would hold it."""
    members = [(name, *spec) if isinstance(spec, tuple) else (name, spec) for name, spec in fields.items()]
    cls = cast(type[Event], msgspec.defstruct("Placed", members, bases=(Event,), kw_only=True))
    cls.schema_version = (1, 1)
    return schema_of("shop", cls)


def test_annotations_and_names_of_nested_types_leave_the_hash_alone() -> None:
    """Docstrings and the names of nested structs are not shape; fields are."""
    first, again = schema_of("shop", Placed), schema_of("shop", PlacedAgain)
    assert (first.key, again.key) == ("shop.Placed.1.0", "shop.Placed.1.0")
    assert first.hash == again.hash
    assert first.canonical["properties"]["size"] == {
        "type": "object",
        "properties": {"width": {"type": "integer"}},
        "required": ["width"],
    }
    assert placed(where=str, size=Size, quantity=(int, 2)).hash != first.hash  # another default


def test_differences_name_each_field_and_what_changed() -> None:
    """Added (with or without a default), removed, retyped, another default, now required: one line each."""
    old = placed(where=str, count=int, colour=(str, "red"), size=(int, 0))
    new = placed(where=int, colour=(str, "blue"), size=int, label=(str, ""), code=str)
    assert [str(d) for d in differences(old.canonical, new.canonical)] == [
        "field 'code' added without a default",
        'field \'colour\' default changed from "red" to "blue"',
        "field 'count' removed",
        "field 'label' added, with a default",
        "field 'size' now required (it had a default)",
        'field \'where\' retyped from {"type":"string"} to {"type":"integer"}',
    ]
    assert [d.field for d in incompatibilities(old, new)] == ["code", "colour", "count", "size", "where"]


def test_a_minor_may_add_fields_with_defaults_and_nothing_else() -> None:
    """Inventory 1.1 beside 1.0 is compatible; a removed field under a minor is not, and says what to do."""
    assert problems(schemas_of(v1_1.inventory), schemas_of(v1.inventory)) == []
    assert problems(schemas_of(v1.inventory), schemas_of(v1_1.inventory)) == []
    assert problems(schemas_of(v2.inventory), schemas_of(v1.inventory)) == []  # a new major stands alone
    without_count = placed(where=str)
    registered = [schema_of("shop", Placed)]
    [problem] = problems([without_count], registered)
    assert problem.startswith("shop Placed 1.1 is not compatible with shop Placed 1.0: from 1.0 to 1.1, ")
    assert "field 'quantity' removed; field 'size' removed" in problem
    assert problem.endswith("raise the version to 2.0 instead (with an upcaster from 1)")


def test_a_version_keeps_its_shape_once_registered() -> None:
    """The same version with another shape is refused, naming who registered it and each difference."""

    class ItemsCheckedIn(Event):  # 1.0 still, with a field more
        count: int
        note: str = ""

    mine = schema_of("inventory", ItemsCheckedIn)
    registered = schema_of("inventory", v1.ItemsCheckedIn)
    theirs = dataclasses.replace(registered, node="node-2", at="2026-12-01T10:00:00Z")
    [problem] = problems([mine], [theirs])
    assert problem == (
        "inventory ItemsCheckedIn 1.0 is registered with another shape (by node-2 at 2026-12-01T10:00:00Z): "
        "field 'note' added, with a default. A version keeps its shape once registered: raise the version to 1.1 "
        "if every change is a field added with a default, else to 2.0 (with an upcaster from 1)"
    )


def test_every_event_type_of_a_context_has_a_schema() -> None:
    """A context's schemas: one per event type, by name, each under its own key."""
    assert [s.key for s in schemas_of(v2.inventory)] == [
        "inventory.ItemCreated.2.0",
        "inventory.ItemsCheckedIn.1.1",
        "inventory.ItemsRemoved.1.0",
    ]


class Spot(msgspec.Struct):
    street: str


class SpotWithZip(msgspec.Struct):
    street: str
    zip: str = ""


class SpotByNumber(msgspec.Struct):
    street: int


class Moved(Event):
    to: Spot
    maybe: Spot | None = None
    trail: list[Spot] = msgspec.field(default_factory=list)


class MovedWithZips(Event):
    event_type: ClassVar[str | None] = "Moved"
    schema_version: ClassVar[tuple[int, int]] = (1, 1)
    to: SpotWithZip
    maybe: SpotWithZip | None = None
    trail: list[SpotWithZip] = msgspec.field(default_factory=list)


class MovedByNumber(Event):
    event_type: ClassVar[str | None] = "Moved"
    schema_version: ClassVar[tuple[int, int]] = (1, 1)
    to: SpotByNumber
    maybe: Spot | None = None
    trail: list[Spot] = msgspec.field(default_factory=list)


def test_fields_of_nested_structs_are_compared_by_path() -> None:
    """A field added with a default inside a struct, an optional struct or a list of them is compatible;
    one retyped there is named by its path."""
    before = schema_of("moves", Moved)
    assert incompatibilities(before, schema_of("moves", MovedWithZips)) == []
    assert [str(d) for d in differences(before.canonical, schema_of("moves", MovedWithZips).canonical)] == [
        "field 'maybe.zip' added, with a default",
        "field 'to.zip' added, with a default",
        "field 'trail[].zip' added, with a default",
    ]
    [retyped] = incompatibilities(before, schema_of("moves", MovedByNumber))
    assert str(retyped) == 'field \'to.street\' retyped from {"type":"string"} to {"type":"integer"}'


class Left(msgspec.Struct):
    right: Right | None = None


class Right(msgspec.Struct):
    left: Left | None = None
    again: Right | None = None


class RightElsewhere(msgspec.Struct):
    left: LeftElsewhere | None = None
    again: LeftElsewhere | None = None  # was a Right: another shape, though both are recursive


class LeftElsewhere(msgspec.Struct):
    right: RightElsewhere | None = None


class Linked(Event):
    start: Left


class LinkedElsewhere(Event):
    event_type: ClassVar[str | None] = "Linked"
    start: LeftElsewhere


def test_recursive_types_are_told_apart_by_which_type_they_recur_to() -> None:
    assert schema_of("links", Linked).hash != schema_of("links", LinkedElsewhere).hash


class Tagged(msgspec.Struct, tag=True):
    n: int


class TaggedRenamed(msgspec.Struct, tag="Tagged"):
    n: int


class Other(msgspec.Struct, tag=True):
    s: str


class Chose(Event):
    choice: Tagged | Other


class ChoseRenamed(Event):
    event_type: ClassVar[str | None] = "Chose"
    choice: TaggedRenamed | Other


def test_a_renamed_class_in_a_tagged_union_keeps_the_shape() -> None:
    assert schema_of("choices", Chose).hash == schema_of("choices", ChoseRenamed).hash


def test_shapes_that_differ_in_no_field_are_the_same_shape() -> None:
    """A hash computed by another canonical form (an older Radix) is no reason to refuse a node."""
    mine = schema_of("inventory", v1.ItemsCheckedIn)
    stored = dataclasses.replace(mine, hash="0123456789abcdef")
    assert problems([mine], [stored]) == []
