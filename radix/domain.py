"""The domain model: what a user writes to define a bounded context.

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

import operator
import typing
from collections.abc import Iterable, Mapping, Sequence
from functools import reduce
from typing import Any, ClassVar, Generic, TypeVar

import msgspec

from radix.errors import DecodeError, DefinitionError, InvalidNameError, UnknownTypeError
from radix.wire.names import default_placement_key, validate_aggregate_type, validate_context

__all__ = [
    "Aggregate",
    "BoundedContext",
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
    (a new field with a default), the major for incompatible ones. Unknown fields
    are tolerated when reading, so code one minor version behind still reads newer
    events. The type name stored with an event is the class name, or
    `event_type` when a class sets it.
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


def _union(types: Iterable[type[Any]]) -> Any:
    return reduce(operator.or_, types)


class AggregateCodec:
    """Encodes and decodes one aggregate type's commands and events."""

    def __init__(self, aggregate: Aggregate[Any, Any, Any], context_commands: Mapping[str, str]) -> None:
        self.aggregate = aggregate
        self.type_name = aggregate.type_name
        command_types = leaf_types(aggregate.command_base)
        event_types = leaf_types(aggregate.event_base)
        self.command_names = tuple(sorted(command_type_name(t) for t in command_types))
        self.event_types: dict[str, type[Event]] = {event_type_name(t): t for t in event_types}
        if len(self.event_types) != len(event_types):
            raise DefinitionError(f"{self.type_name}: two event types share a name")
        self._command_decoder = msgspec.json.Decoder(_union(command_types))
        self._event_decoders = {name: msgspec.json.Decoder(t) for name, t in self.event_types.items()}
        self._context_commands = context_commands

    def decode_command(self, payload: bytes) -> Command:
        """Decode a command payload to exactly one member of the aggregate's command union."""
        try:
            command: Command = self._command_decoder.decode(payload)
        except msgspec.ValidationError as e:  # a subclass of msgspec.DecodeError: test it first
            raise self._explain(payload, e) from None
        except msgspec.DecodeError as e:
            raise DecodeError(
                f'malformed command payload: {e}; send a JSON object with a "type" field, '
                f"one of {', '.join(self.command_names)}"
            ) from None
        return command

    def _explain(self, payload: bytes, error: msgspec.ValidationError) -> DecodeError:
        try:
            tag = msgspec.json.decode(payload, type=dict[str, Any]).get("type")
        except msgspec.DecodeError:  # includes ValidationError: not an object
            tag = None
        expected = self.command_names
        if isinstance(tag, str) and tag not in expected:
            owner = self._context_commands.get(tag)
            where = f"it belongs to {owner}, " if owner else ""
            return UnknownTypeError(
                f"unknown command type {tag!r} for {self.type_name}: {where}expected one of {', '.join(expected)}",
                type_name=tag,
                expected=expected,
            )
        return DecodeError(f"invalid {tag if isinstance(tag, str) else 'command'} payload: {error}")

    def encode_event(self, event: Event) -> EventData:
        """The stored form of one of this aggregate's events."""
        cls = type(event)
        name = event_type_name(cls)
        if self.event_types.get(name) is not cls:
            raise DefinitionError(f"{cls.__name__} is not an event type of {self.type_name}")
        major, minor = cls.schema_version
        return EventData(type=name, schema=f"{major}.{minor}", data=msgspec.Raw(_encoder.encode(event)))

    def decode_event(self, type_name: str, schema: str, data: bytes | msgspec.Raw) -> Event:
        """Decode a stored event; an unknown type or an unreadable major version is an error."""
        decoder = self._event_decoders.get(type_name)
        if decoder is None:
            raise UnknownTypeError(
                f"unknown event type {type_name!r} for {self.type_name}: "
                f"expected one of {', '.join(sorted(self.event_types))}",
                type_name=type_name,
                expected=tuple(sorted(self.event_types)),
            )
        major = self.event_types[type_name].schema_version[0]
        stored_major, _, _ = schema.partition(".")
        if stored_major != str(major):
            raise DecodeError(
                f"event {type_name} is stored with schema {schema}, but this code reads {major}.x; "
                "deploy code that reads that version"
            )
        try:
            event: Event = decoder.decode(data)
        except msgspec.DecodeError as e:  # includes ValidationError
            raise DecodeError(f"invalid {type_name} event data: {e}") from None
        return event


class BoundedContext:
    """A named set of aggregate types that a node hosts together."""

    def __init__(self, name: str, aggregates: Sequence[Aggregate[Any, Any, Any]]) -> None:
        self.name = validate_context(name)
        if not aggregates:
            raise DefinitionError(f"context {name!r} needs at least one aggregate type")
        owners: dict[str, str] = {}
        for aggregate in aggregates:
            for command_type in leaf_types(aggregate.command_base):
                owners[command_type_name(command_type)] = aggregate.type_name
        self._command_owner: dict[type[Command], str] = {}
        self.codecs: dict[str, AggregateCodec] = {}
        for aggregate in aggregates:
            self._command_owner.update(dict.fromkeys(leaf_types(aggregate.command_base), aggregate.type_name))
            if aggregate.type_name in self.codecs:
                raise DefinitionError(f"context {name!r} names aggregate type {aggregate.type_name!r} twice")
            self.codecs[aggregate.type_name] = AggregateCodec(aggregate, owners)

    def codec(self, aggregate_type: str) -> AggregateCodec:
        """The codec of one aggregate type; an unknown type is an `InvalidNameError`."""
        codec = self.codecs.get(aggregate_type)
        if codec is None:
            raise InvalidNameError(
                "aggregate type",
                aggregate_type,
                f"context {self.name!r} has {', '.join(sorted(self.codecs))}",
            )
        return codec

    def aggregate_type_of(self, command_type: type[Command]) -> str:
        """The aggregate type that handles a command type."""
        owner = self._command_owner.get(command_type)
        if owner is None:
            raise DefinitionError(f"{command_type.__name__} is not a command of context {self.name!r}")
        return owner

    def __repr__(self) -> str:
        return f"BoundedContext({self.name!r}, [{', '.join(sorted(self.codecs))}])"
