"""A context of placement groups, for tests of shards: the seats of one show (`show-1=a3`, `show-1=b7`)
share a placement key, so they share a shard, live on one node and move together."""

from __future__ import annotations

from collections.abc import Sequence

from radix import Aggregate, BoundedContext, Command, Event


class SeatCommand(Command): ...


class Book(SeatCommand): ...


class SeatEvent(Event): ...


class Booked(SeatEvent): ...


class Seat(Aggregate[int, SeatCommand, SeatEvent]):
    """A seat, grouped with the other seats of its show: its placement key is the show's."""

    def initial_state(self) -> int:
        return 0

    def evolve(self, state: int, event: SeatEvent) -> int:
        return state + 1

    def decide(self, state: int, command: SeatCommand) -> Sequence[SeatEvent]:
        return [Booked()]

    def placement_key(self, aggregate_id: str) -> str:
        return f"Seat.{aggregate_id.split('=')[0]}"


shows = BoundedContext("shows", [Seat()])
