"""A context whose code misbehaves on request, for tests of what a node does about user code that fails."""

from __future__ import annotations

from collections.abc import Sequence

from radix import Aggregate, BoundedContext, Command, DomainError, Event
from radix.examples.inventory import InventoryItem, ItemCreated


class GadgetCommand(Command):
    pass


class Poke(GadgetCommand):
    pass


class Explode(GadgetCommand):
    pass


class Corrupt(GadgetCommand):
    pass


class Scribble(GadgetCommand):
    size: int


class Refuse(GadgetCommand):
    size: int


class Mistype(GadgetCommand):
    """Decides an event whose field holds a value of another type (msgspec does not check on construction)."""


class Stray(GadgetCommand):
    """Decides an event of another aggregate type."""


class GadgetEvent(Event):
    pass


class Poked(GadgetEvent):
    pass


class Corrupted(GadgetEvent):
    pass


class Scribbled(GadgetEvent):
    text: str


class Gadget(Aggregate[int, GadgetCommand, GadgetEvent]):
    def initial_state(self) -> int:
        return 0

    def evolve(self, state: int, event: GadgetEvent) -> int:
        if isinstance(event, Corrupted):
            raise RuntimeError("evolve cannot apply Corrupted")
        return state + 1

    def decide(self, state: int, command: GadgetCommand) -> Sequence[GadgetEvent]:
        if isinstance(command, Explode):
            raise ZeroDivisionError("boom")
        if isinstance(command, Corrupt):
            return [Corrupted()]
        if isinstance(command, Scribble):
            return [Scribbled(text="x" * command.size)]
        if isinstance(command, Refuse):
            raise DomainError("no" * (command.size // 2))
        if isinstance(command, Mistype):
            return [Poked(), Scribbled(text=5)]  # type: ignore[arg-type]
        if isinstance(command, Stray):
            return [ItemCreated(name="not mine")]  # type: ignore[list-item]
        return [Poked()]

    def show(self, state: int) -> object:
        return {"events": state, "note": "shown by the aggregate's own rule"}


gadgets = BoundedContext("gadgets", [Gadget(), InventoryItem()])
