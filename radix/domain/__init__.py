"""The domain: what a user writes to define a bounded context, and how its messages are encoded.

Commands and events are msgspec structs arranged in hierarchies; the leaf classes below an
aggregate's command (or event) base are the members of its sum type, and classes with
subclasses are categories. An aggregate type is a class with four pure methods:
`initial_state`, `evolve`, `decide` and `conflicts`. Nothing here does I/O, and importing it
loads neither nats nor prometheus_client.

- `model`: `Command`, `Event`, `Aggregate`;
- `context`: `BoundedContext`, the aggregates a node hosts together;
- `codec`: `AggregateCodec`, one aggregate type's commands and events to and from JSON;
- `evolution`: `upcaster`, reading events stored under an older major version;
- `schemas`: event schemas and the rules that keep their versions compatible;
- `processing`: reactions (events to commands) and projections (events to read models).
"""

from radix.domain.codec import AggregateCodec
from radix.domain.context import BoundedContext
from radix.domain.evolution import Upcaster, upcaster
from radix.domain.model import (
    Aggregate,
    Command,
    Event,
    EventData,
    SchemaVersion,
    command_type_name,
    encode_command,
    event_type_name,
    leaf_types,
)
from radix.domain.processing import (
    Delete,
    KVView,
    Projection,
    Put,
    Reaction,
    Record,
    Send,
    SQLiteView,
    Update,
    View,
    ViewStore,
    Write,
    projection,
    reaction,
)

__all__ = [
    "Aggregate",
    "AggregateCodec",
    "BoundedContext",
    "Command",
    "Delete",
    "Event",
    "EventData",
    "KVView",
    "Projection",
    "Put",
    "Reaction",
    "Record",
    "SQLiteView",
    "SchemaVersion",
    "Send",
    "Upcaster",
    "Update",
    "View",
    "ViewStore",
    "Write",
    "command_type_name",
    "encode_command",
    "event_type_name",
    "leaf_types",
    "projection",
    "reaction",
    "upcaster",
]
