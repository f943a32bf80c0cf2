"""Radix: a distributed actor runtime for event-sourced aggregates on NATS JetStream."""

from radix.domain import Aggregate, BoundedContext, Command, Event, EventData
from radix.errors import (
    CommitTooLargeError,
    CorruptCommitError,
    DecodeError,
    DomainError,
    InvalidNameError,
    NatsServerError,
    RadixError,
    StoreError,
    StoreUnavailableError,
    UnknownTypeError,
    VersionConflictError,
)
from radix.names import Address
from radix.server import EmbeddedNats
from radix.store import Commit, EventStore, InMemoryEventStore, JetStreamEventStore, StoreConfig

__all__ = [
    "Address",
    "Aggregate",
    "BoundedContext",
    "Command",
    "Commit",
    "CommitTooLargeError",
    "CorruptCommitError",
    "DecodeError",
    "DomainError",
    "EmbeddedNats",
    "Event",
    "EventData",
    "EventStore",
    "InMemoryEventStore",
    "InvalidNameError",
    "JetStreamEventStore",
    "NatsServerError",
    "RadixError",
    "StoreConfig",
    "StoreError",
    "StoreUnavailableError",
    "UnknownTypeError",
    "VersionConflictError",
]
