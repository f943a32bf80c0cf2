"""The model: commands, events and aggregate types, as a user writes them.

Commands and events are msgspec structs arranged in hierarchies; the leaf classes
below an aggregate's command (or event) base are the members of its sum type, and
classes with subclasses are categories. An aggregate type is a class with four pure
methods: `initial_state`, `evolve`, `decide` and `conflicts`. Nothing here does I/O.

    class InventoryCommand(Command): ...
    class InventoryItemCommand(InventoryCommand): ...
    class CheckIn(InventoryItemCommand):
        count: int

    class InventoryItem(Aggregate[ItemState, InventoryItemCommand, InventoryItemEvent]):
        def initial_state(self) -> ItemState: ...
        def evolve(self, state, event): ...
        def decide(self, state, command): ...

    inventory = BoundedContext("inventory", [InventoryItem()])
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from typing import Any, ClassVar, Generic, TypeVar

import msgspec

from radix.errors import DefinitionError
from radix.wire.names import default_placement_key, validate_aggregate_type

__all__ = [
    "Aggregate",
    "Command",
    "Event",
    "EventData",
    "SchemaVersion",
    "command_type_name",
    "encode_command",
    "event_type_name",
    "leaf_types",
]

SchemaVersion = tuple[int, int]


class Command(msgspec.Struct, tag_field="type", tag=True, forbid_unknown_fields=True, kw_only=True):
    """The base of every command: a request to change one aggregate.

    The JSON form carries the class name as `"type"` (override with msgspec's
    `tag=` class keyword). Unknown fields are refused, so a typo is an error
    rather than a silently dropped value. The aggregate id is not a field: it is
    the address the command is sent to. Treat commands as values: Radix never
    changes one (they are not frozen only so that subclasses need no `frozen=True`).
    """


class Event(msgspec.Struct, kw_only=True):
    """The base of every event: a fact, named in the past tense.

    `schema_version` is `(major, minor)`: raise the minor for compatible changes
    (a new field with a default), the major for incompatible ones, with an upcaster
    from the old major (`radix.domain.evolution`). Unknown fields are tolerated when
    reading, so code one minor version behind still reads newer events. The type name
    stored with an event is the class name, or `event_type` when a class sets it (so
    a class can be renamed and still read what was stored under its old name).
    """

    schema_version: ClassVar[SchemaVersion] = (1, 0)
    event_type: ClassVar[str | None] = None


class EventData(msgspec.Struct, frozen=True):
    """An event in its stored form: type name, schema version `"major.minor"` and JSON data."""

    type: str
    schema: str
    data: msgspec.Raw


def command_type_name(cls: type[Command]) -> str:
    """The name a command type is known by on the wire."""
    tag = cls.__struct_config__.tag
    return tag if isinstance(tag, str) else cls.__name__


def event_type_name(cls: type[Event]) -> str:
    """The name an event type is stored under."""
    own = cls.__dict__.get("event_type")
    return own if isinstance(own, str) else cls.__name__


def leaf_types(base: type[Any]) -> tuple[type[Any], ...]:
    """The concrete members of a hierarchy: subclasses of `base` that have no subclasses."""
    subclasses = base.__subclasses__()
    if not subclasses:
        return (base,)
    leaves: dict[type[Any], None] = {}
    for sub in subclasses:
        leaves.update(dict.fromkeys(leaf_types(sub)))
    return tuple(sorted(leaves, key=lambda t: t.__name__))


_encoder = msgspec.json.Encoder()


def encode_command(command: Command) -> bytes:
    """The JSON form of a command, with its `"type"` tag."""
    return _encoder.encode(command)


S = TypeVar("S")
C = TypeVar("C", bound=Command)
E = TypeVar("E", bound=Event)


class Aggregate(Generic[S, C, E]):
    """An aggregate type: the consistency boundary and its pure rules.

    Subclass it as `Aggregate[State, MyCommand, MyEvent]`; the type name is the
    class name unless the class sets `type_name`. Instances hold no per-aggregate
    data: the state is passed in and returned, so one instance serves every
    aggregate of the type.
    """

    type_name: ClassVar[str]
    state_type: ClassVar[Any]
    command_base: ClassVar[type[Command]]
    event_base: ClassVar[type[Event]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for base in getattr(cls, "__orig_bases__", ()):
            if typing.get_origin(base) is Aggregate:
                state, command, event = typing.get_args(base)
                if isinstance(command, TypeVar) or isinstance(event, TypeVar):
                    return  # a generic intermediate class; its subclasses fill the types in
                if not (isinstance(command, type) and issubclass(command, Command)):
                    raise DefinitionError(f"{cls.__name__}: the command type must be a Command subclass")
                if not (isinstance(event, type) and issubclass(event, Event)):
                    raise DefinitionError(f"{cls.__name__}: the event type must be an Event subclass")
                cls.state_type = state
                cls.command_base = command
                cls.event_base = event
        if "type_name" not in cls.__dict__:
            cls.type_name = cls.__name__
        validate_aggregate_type(cls.type_name)

    def placement_key(self, aggregate_id: str) -> str:
        """The key under which this aggregate's ownership is leased: the seam for co-location.

        Aggregates with the same key are owned by one node at a time. By default every
        aggregate has its own: `{type_name}.{aggregate_id}`. Return letters, digits and
        `-_=/.` only (it is part of a KV key).
        """
        return default_placement_key(self.type_name, aggregate_id)

    def initial_state(self) -> S:
        """The state of an aggregate that has no events yet."""
        raise NotImplementedError

    def evolve(self, state: S, event: E) -> S:
        """Apply one fact to the state. Never fails and never does I/O."""
        raise NotImplementedError

    def decide(self, state: S, command: C) -> Sequence[E]:
        """The events a command produces; raise `DomainError` to reject it."""
        raise NotImplementedError

    def show(self, state: S) -> Any:
        """The state as readers see it (`radix get`, `Client.read`, docs/protocol.md): a value msgspec
        encodes as JSON. By default the state itself; override to leave out or reshape what readers
        should not rely on."""
        return state

    def conflicts(self, command: C, concurrent: Sequence[E]) -> str | None:
        """Whether `command` is still valid given events committed after the version its issuer saw.

        Return a reason to reject it as a conflict, or None to let it proceed on
        the current state. By default any concurrent event conflicts.
        """
        if not concurrent:
            return None
        names = ", ".join(sorted({event_type_name(type(e)) for e in concurrent}))
        return f"{len(concurrent)} event(s) were committed since the version you saw ({names})"
