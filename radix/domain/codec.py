"""Encoding and decoding one aggregate type's commands and events.

Commands decode to exactly one member of the aggregate's command union. Events are written in
their newest shape, checked against it first (an event that would not read back is refused
before anything is written), and read through the upcaster chain (`radix.domain.evolution`), so
whatever major a stored event has, `evolve` sees the newest. What cannot be read says what code
would read it (`UnreadableEventError`).
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping, Sequence
from functools import reduce
from typing import Any

import msgspec

from radix.domain.evolution import Upcaster
from radix.domain.model import (
    Aggregate,
    Command,
    Event,
    EventData,
    command_type_name,
    event_type_name,
    leaf_types,
)
from radix.errors import (
    DecodeError,
    DefinitionError,
    InvalidEventError,
    InvalidNameError,
    UnknownTypeError,
    UnreadableEventError,
)
from radix.wire.names import validate_event_type

__all__ = ["AggregateCodec"]

_encoder = msgspec.json.Encoder()


def _union(types: Iterable[type[Any]]) -> Any:
    return reduce(operator.or_, types)


def _version_of(cls: type[Event]) -> str:
    version = cls.schema_version
    if not (
        isinstance(version, tuple)
        and len(version) == 2
        and all(isinstance(n, int) and not isinstance(n, bool) for n in version)
        and version[0] >= 1
        and version[1] >= 0
    ):
        raise DefinitionError(
            f"{cls.__name__}.schema_version is {version!r}: give (major, minor), whole numbers, major from 1"
        )
    return f"{version[0]}.{version[1]}"


def _check_settings(cls: type[Event]) -> None:
    """Refuse struct settings under which a compatible minor would not be: code one minor behind must read
    fields it does not know (so no `forbid_unknown_fields`), and code one minor on must find every field it
    requires (so no `omit_defaults`, which leaves out a value equal to a default the older code lacks)."""
    config = cls.__struct_config__
    for setting in ("forbid_unknown_fields", "omit_defaults"):
        if getattr(config, setting):
            raise DefinitionError(
                f"{cls.__name__} sets {setting}=True: events are read by code one minor version behind or on, "
                f"which {setting} would break (docs/evolving-events.md); leave it out"
            )


class AggregateCodec:
    """Encodes and decodes one aggregate type's commands and events."""

    def __init__(
        self,
        aggregate: Aggregate[Any, Any, Any],
        context_commands: Mapping[str, str],
        upcasters: Sequence[Upcaster] = (),
    ) -> None:
        self.aggregate = aggregate
        self.type_name = aggregate.type_name
        command_types = leaf_types(aggregate.command_base)
        event_types = leaf_types(aggregate.event_base)
        self.command_names = tuple(sorted(command_type_name(t) for t in command_types))
        self.event_types: dict[str, type[Event]] = {event_type_name(t): t for t in event_types}
        if len(self.event_types) != len(event_types):
            raise DefinitionError(f"{self.type_name}: two event types share a name")
        for name in self.event_types:
            try:
                validate_event_type(name)
            except InvalidNameError as e:
                raise DefinitionError(f"{self.type_name}: {e}") from None
        for event_type in event_types:
            _check_settings(event_type)
        self.versions: dict[type[Event], str] = {t: _version_of(t) for t in event_types}
        """Each event type's newest version, `"major.minor"`: what it is written as."""
        self._majors = {name: str(t.schema_version[0]) for name, t in self.event_types.items()}
        self._steps: dict[tuple[str, int], Upcaster] = {}
        for step in upcasters:
            if (step.type_name, step.from_major) in self._steps:
                raise DefinitionError(
                    f"two upcasters read {step.type_name} from major {step.from_major}: "
                    f"{self._steps[(step.type_name, step.from_major)].name} and {step.name}"
                )
            self._steps[(step.type_name, step.from_major)] = step
        self._command_decoder = msgspec.json.Decoder(_union(command_types))
        self._event_decoders = {name: msgspec.json.Decoder(t) for name, t in self.event_types.items()}
        self._context_commands = context_commands

    # -- commands --------------------------------------------------------------------------

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
        except RecursionError:
            raise DecodeError("the command payload nests too deep to read: send a flatter JSON object") from None
        return command

    def _explain(self, payload: bytes, error: msgspec.ValidationError) -> DecodeError:
        try:
            tag = msgspec.json.decode(payload, type=dict[str, Any]).get("type")
        except (msgspec.DecodeError, RecursionError):  # includes ValidationError: not an object
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

    # -- events ----------------------------------------------------------------------------

    def encode_event(self, event: Event) -> EventData:
        """The stored form of one of this aggregate's events, in its newest version.

        Refused (nothing is written): an event of a type that is not one of the aggregate's
        (`DefinitionError`), and one whose values do not fit its declared fields, which would be
        stored but never read back (`InvalidEventError`).
        """
        cls = type(event)
        name = event_type_name(cls)
        if self.event_types.get(name) is not cls:
            raise DefinitionError(
                f"{cls.__name__} is not an event type of {self.type_name} "
                f"(those are {', '.join(sorted(self.event_types))}): return one of them from decide"
            )
        data = _encoder.encode(event)
        try:
            self._event_decoders[name].decode(data)
        except msgspec.ValidationError as e:
            raise InvalidEventError(
                f"{name} {self.versions[cls]} as decided does not fit its declared fields ({e}): "
                "it would be stored but could not be read back; fix decide"
            ) from None
        return EventData(type=name, schema=self.versions[cls], data=msgspec.Raw(data))

    def decode_event(self, type_name: str, schema: str, data: bytes | msgspec.Raw) -> Event:
        """Decode a stored event into its newest version, through the upcasters if it is of an older major.

        Raises `UnreadableEventError` if this code cannot read it (see `unreadable`), `DecodeError`
        if the data does not fit.
        """
        decoder = self._event_decoders.get(type_name)
        if decoder is not None and schema.partition(".")[0] == self._majors[type_name]:
            try:
                event: Event = decoder.decode(data)
            except msgspec.DecodeError as e:  # includes ValidationError
                raise DecodeError(f"invalid {type_name} event data: {e}") from None
            return event
        return self._upcast(type_name, schema, data)

    def unreadable(self, type_name: str, schema: str) -> UnreadableEventError | None:
        """Why this code cannot read events of `type_name` stored as `schema` (None: it can)."""
        cls = self.event_types.get(type_name)
        if cls is None:
            return UnreadableEventError(
                f"{type_name} events are stored for {self.type_name}, but this code has no such event type "
                f"(it has {', '.join(sorted(self.event_types))})",
                type_name=type_name,
                schema=schema,
                deploy=f"knows {type_name}",
            )
        newest = cls.schema_version[0]
        major_text = schema.partition(".")[0]
        if not major_text.isdigit():
            return UnreadableEventError(
                f"{type_name} is stored with schema {schema!r}, which is not 'major.minor'",
                type_name=type_name,
                schema=schema,
                deploy=f"wrote it (no Radix node writes {schema!r})",
            )
        major = int(major_text)
        if major > newest:
            return UnreadableEventError(
                f"{type_name} {schema} is stored, but this code reads {type_name} up to {newest}.x",
                type_name=type_name,
                schema=schema,
                deploy=f"reads {type_name} {major}.x",
            )
        missing = next((m for m in range(major, newest) if (type_name, m) not in self._steps), None)
        if missing is not None:
            return UnreadableEventError(
                f"{type_name} {schema} is stored, but this code reads {type_name} {newest}.x and has no upcaster "
                f"from major {missing} to {missing + 1}",
                type_name=type_name,
                schema=schema,
                deploy=f"declares an upcaster of {type_name} from major {missing} (docs/evolving-events.md)",
            )
        return None

    def knows_in_full(self, type_name: str, schema: str) -> bool:
        """Whether this code reads every field of events stored as `schema`: an older major (through the
        upcasters) or a minor up to its own. A newer minor is read too, without the fields it added, so
        a state built from it is not one that newer code would build (its snapshot must not be written)."""
        cls = self.event_types.get(type_name)
        if cls is None:
            return False
        major, minor = cls.schema_version
        stored_major, _, stored_minor = schema.partition(".")
        if not (stored_major.isdigit() and stored_minor.isdigit()):
            return False
        return int(stored_major) < major or (int(stored_major) == major and int(stored_minor) <= minor)

    def _upcast(self, type_name: str, schema: str, data: bytes | msgspec.Raw) -> Event:
        problem = self.unreadable(type_name, schema)
        if problem is not None:
            raise problem
        cls = self.event_types[type_name]
        try:
            value = msgspec.json.decode(data, type=dict[str, Any])
        except msgspec.DecodeError as e:
            raise DecodeError(f"invalid {type_name} {schema} event data: {e}") from None
        step: Upcaster | None = None
        for major in range(int(schema.partition(".")[0]), cls.schema_version[0]):
            step = self._steps[(type_name, major)]
            try:
                value = step(value)
            except Exception as e:
                raise UnreadableEventError(
                    f"the upcaster {step.name} failed on a stored {type_name} {major}.x ({e!r})",
                    type_name=type_name,
                    schema=schema,
                    deploy=f"fixes the upcaster {step.name}",
                ) from e
        try:  # through JSON, so that values decode as they do from a stored event (dates from strings, ...)
            upcast: Event = self._event_decoders[type_name].decode(_encoder.encode(value))
        except (msgspec.ValidationError, TypeError) as e:  # TypeError: a value JSON cannot hold
            name = step.name if step is not None else "?"
            raise UnreadableEventError(
                f"{type_name} {schema} upcast to {self.versions[cls]} does not fit {type_name} ({e})",
                type_name=type_name,
                schema=schema,
                deploy=f"fixes the upcaster {name}",
            ) from None
        return upcast
