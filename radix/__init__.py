"""Radix: a distributed actor runtime for event-sourced aggregates on NATS JetStream."""

from radix.client import Accepted, Client
from radix.connection import ConnectOptions
from radix.domain import Aggregate, BoundedContext, Command, Event, EventData
from radix.errors import (
    CommandConflictError,
    CommandError,
    CommandFailedError,
    CommandRejectedError,
    CommandTimeoutError,
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
from radix.logs import configure_logging
from radix.names import Address
from radix.runtime import Node, NodeConfig
from radix.server import EmbeddedCluster, EmbeddedNats
from radix.store import Commit, EventStore, InMemoryEventStore, JetStreamEventStore, StoreConfig, Writer

__all__ = [
    "Accepted",
    "Address",
    "Aggregate",
    "BoundedContext",
    "Client",
    "Command",
    "CommandConflictError",
    "CommandError",
    "CommandFailedError",
    "CommandRejectedError",
    "CommandTimeoutError",
    "Commit",
    "CommitTooLargeError",
    "ConnectOptions",
    "CorruptCommitError",
    "DecodeError",
    "DomainError",
    "EmbeddedCluster",
    "EmbeddedNats",
    "Event",
    "EventData",
    "EventStore",
    "InMemoryEventStore",
    "InvalidNameError",
    "JetStreamEventStore",
    "NatsServerError",
    "Node",
    "NodeConfig",
    "RadixError",
    "StoreConfig",
    "StoreError",
    "StoreUnavailableError",
    "UnknownTypeError",
    "VersionConflictError",
    "Writer",
    "configure_logging",
]
