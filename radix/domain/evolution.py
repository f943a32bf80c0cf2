"""Upcasters: how events stored under an older major version are read by code that knows a newer one.

An event type's `schema_version` is `(major, minor)`. A new minor is compatible (new fields with
defaults; the schema registry checks it), so no code is needed to read it. A new major is a breaking
change; the events already stored stay as they are, and the context declares, for each major but the
newest, a step to the next one:

    @upcaster(ItemCreated, from_major=1)
    def unit_added(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "unit": "each"}

    inventory = BoundedContext("inventory", [InventoryItem()], upcasters=[unit_added])

A step takes the stored JSON data of `from_major` (a dict) and returns the data of `from_major + 1`:
a dict, or a msgspec struct. With `reads=`, the data is first converted to that type (a struct kept
for the old shape), so the step works on typed values. Every read path (activation, the conflict
check, `radix tail --context`, the client's decoding of replies) decodes through the same chain, so
`evolve` only ever sees the newest major.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import msgspec

from radix.domain.model import Event, event_type_name
from radix.errors import DefinitionError

__all__ = ["Upcaster", "upcaster"]

_encoder = msgspec.json.Encoder()


@dataclass(frozen=True)
class Upcaster:
    """One step of an event type's chain: its data at `from_major` to its data at `from_major + 1`."""

    event: type[Event]
    from_major: int
    step: Callable[[Any], Any]
    reads: type[Any] | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.event, type) and issubclass(self.event, Event)):
            raise DefinitionError(f"an upcaster needs the Event type it reads into, not {self.event!r}")
        newest = self.event.schema_version[0]
        if not 1 <= self.from_major < newest:
            raise DefinitionError(
                f"the upcaster {self.name} reads {event_type_name(self.event)} from major {self.from_major}, "
                f"but the code's version is {newest}.x: an upcaster goes from an older major (1 to {newest - 1}) "
                "to the next"
            )

    @property
    def type_name(self) -> str:
        return event_type_name(self.event)

    @property
    def name(self) -> str:
        return getattr(self.step, "__qualname__", repr(self.step))

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        """The data one major on. Raises what the step raises (the codec says which step failed)."""
        given: Any = data if self.reads is None else msgspec.json.decode(_encoder.encode(data), type=self.reads)
        result = self.step(given)
        if isinstance(result, dict):
            return cast(dict[str, Any], result)
        built = msgspec.to_builtins(result)
        if not isinstance(built, dict):
            raise DefinitionError(f"{self.name} returned {type(result).__name__}, not a dict or a struct")
        return cast(dict[str, Any], built)


def upcaster(
    event: type[Event], *, from_major: int, reads: type[Any] | None = None
) -> Callable[[Callable[[Any], Any]], Upcaster]:
    """Declare a function as the step of `event`'s data from `from_major` to the next major (see above)."""

    def declare(step: Callable[[Any], Any]) -> Upcaster:
        return Upcaster(event, from_major, step, reads)

    return declare
