"""A bounded context: a named set of aggregate types that a node hosts together, with their codecs
and the upcasters of their events."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from radix.domain.codec import AggregateCodec
from radix.domain.evolution import Upcaster
from radix.domain.model import Aggregate, Command, Event, command_type_name, event_type_name, leaf_types
from radix.domain.processing import Projection, Reaction
from radix.errors import DefinitionError, InvalidNameError
from radix.wire.names import validate_context

__all__ = ["BoundedContext"]


class BoundedContext:
    """A named set of aggregate types that a node hosts together.

    Event type names are unique within a context (the schema registry keys schemas by context and
    event type); `upcasters` read events stored under older major versions (`radix.domain.evolution`).
    """

    def __init__(
        self,
        name: str,
        aggregates: Sequence[Aggregate[Any, Any, Any]],
        *,
        upcasters: Sequence[Upcaster] = (),
        reactions: Sequence[Reaction] = (),
        projections: Sequence[Projection] = (),
    ) -> None:
        self.name = validate_context(name)
        self.reactions = tuple(reactions)
        """What the nodes hosting the context run on its events: commands sent (`radix.domain.processing`)."""
        self.projections = tuple(projections)
        """What the nodes hosting the context run on its events: read models kept."""
        processors = [r.name for r in reactions] + [p.name for p in projections]
        if len(set(processors)) != len(processors):
            twice = sorted({n for n in processors if processors.count(n) > 1})
            raise DefinitionError(
                f"context {name!r} names {', '.join(twice)} twice among its reactions and projections"
            )
        if not aggregates:
            raise DefinitionError(f"context {name!r} needs at least one aggregate type")
        owners: dict[str, str] = {}
        for aggregate in aggregates:
            for command_type in leaf_types(aggregate.command_base):
                owners[command_type_name(command_type)] = aggregate.type_name
        self.event_types = _event_types(name, aggregates)
        """Every event type of the context, by the name it is stored under."""
        for step in upcasters:
            if self.event_types.get(step.type_name) is not step.event:
                raise DefinitionError(
                    f"the upcaster {step.name} reads {step.type_name}, which is not an event type of context {name!r}"
                )
        self.upcasters = tuple(upcasters)
        self._command_owner: dict[type[Command], str] = {}
        self.codecs: dict[str, AggregateCodec] = {}
        for aggregate in aggregates:
            self._command_owner.update(dict.fromkeys(leaf_types(aggregate.command_base), aggregate.type_name))
            if aggregate.type_name in self.codecs:
                raise DefinitionError(f"context {name!r} names aggregate type {aggregate.type_name!r} twice")
            own = set(leaf_types(aggregate.event_base))
            steps = [u for u in upcasters if u.event in own]
            self.codecs[aggregate.type_name] = AggregateCodec(aggregate, owners, steps)

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


def _event_types(context: str, aggregates: Sequence[Aggregate[Any, Any, Any]]) -> dict[str, type[Event]]:
    found: dict[str, type[Event]] = {}
    for aggregate in aggregates:
        for event_type in leaf_types(aggregate.event_base):
            name = event_type_name(event_type)
            if found.setdefault(name, event_type) is not event_type:
                raise DefinitionError(
                    f"context {context!r} has two event types named {name!r} ({found[name].__qualname__} and "
                    f"{event_type.__qualname__}): schemas are registered by context and event type name; "
                    "rename one, or set its event_type"
                )
    return dict(sorted(found.items()))
