"""Radix: a distributed actor runtime for event-sourced aggregates on NATS JetStream.

What a user needs is importable from here. Names are loaded on first use, so that a module
defining a bounded context (`from radix import Aggregate, Command, Event`) loads the domain
model only, not NATS or the metrics client.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what the lazy loading below gives, for type checkers and editors
    from radix.client import Accepted, Client
    from radix.domain import (
        Aggregate,
        BoundedContext,
        Command,
        Delete,
        Event,
        EventData,
        KVView,
        Put,
        Record,
        Send,
        SQLiteView,
        Update,
        projection,
        reaction,
        upcaster,
    )
    from radix.errors import (
        CommandConflictError,
        CommandError,
        CommandFailedError,
        CommandRejectedError,
        CommandTimeoutError,
        CommitTooLargeError,
        ConfigError,
        CorruptCommitError,
        DecodeError,
        DefinitionError,
        DomainError,
        InvalidArgumentError,
        InvalidEventError,
        InvalidNameError,
        NatsServerError,
        RadixError,
        SchemaError,
        StoreError,
        StoreUnavailableError,
        UnknownTypeError,
        UnreadableEventError,
        VersionConflictError,
    )
    from radix.observability.logs import configure_logging
    from radix.runtime.config import (
        ActorConfig,
        CommandLogConfig,
        IntakeConfig,
        MetricsConfig,
        NodeConfig,
        PlacementConfig,
    )
    from radix.runtime.node import Node
    from radix.store.commit import Commit, Writer
    from radix.store.jetstream import JetStreamEventStore, StoreConfig
    from radix.store.memory import InMemoryEventStore
    from radix.store.ports import EventStore
    from radix.transport.connection import ConnectOptions
    from radix.transport.server import EmbeddedCluster, EmbeddedNats
    from radix.wire.names import Address

#: Each public name, and the module it lives in.
_EXPORTS: dict[str, str] = {
    "Accepted": "radix.client",
    "ActorConfig": "radix.runtime.config",
    "Address": "radix.wire.names",
    "Aggregate": "radix.domain",
    "BoundedContext": "radix.domain",
    "Client": "radix.client",
    "Command": "radix.domain",
    "CommandConflictError": "radix.errors",
    "CommandError": "radix.errors",
    "CommandFailedError": "radix.errors",
    "CommandLogConfig": "radix.runtime.config",
    "CommandRejectedError": "radix.errors",
    "CommandTimeoutError": "radix.errors",
    "Commit": "radix.store.commit",
    "CommitTooLargeError": "radix.errors",
    "ConfigError": "radix.errors",
    "ConnectOptions": "radix.transport.connection",
    "CorruptCommitError": "radix.errors",
    "DecodeError": "radix.errors",
    "DefinitionError": "radix.errors",
    "Delete": "radix.domain",
    "DomainError": "radix.errors",
    "EmbeddedCluster": "radix.transport.server",
    "EmbeddedNats": "radix.transport.server",
    "Event": "radix.domain",
    "EventData": "radix.domain",
    "EventStore": "radix.store.ports",
    "InMemoryEventStore": "radix.store.memory",
    "IntakeConfig": "radix.runtime.config",
    "InvalidArgumentError": "radix.errors",
    "InvalidEventError": "radix.errors",
    "InvalidNameError": "radix.errors",
    "JetStreamEventStore": "radix.store.jetstream",
    "KVView": "radix.domain",
    "MetricsConfig": "radix.runtime.config",
    "NatsServerError": "radix.errors",
    "Node": "radix.runtime.node",
    "NodeConfig": "radix.runtime.config",
    "PlacementConfig": "radix.runtime.config",
    "Put": "radix.domain",
    "RadixError": "radix.errors",
    "Record": "radix.domain",
    "SQLiteView": "radix.domain",
    "SchemaError": "radix.errors",
    "Send": "radix.domain",
    "StoreConfig": "radix.store.jetstream",
    "StoreError": "radix.errors",
    "StoreUnavailableError": "radix.errors",
    "UnknownTypeError": "radix.errors",
    "UnreadableEventError": "radix.errors",
    "Update": "radix.domain",
    "VersionConflictError": "radix.errors",
    "Writer": "radix.store.commit",
    "configure_logging": "radix.observability.logs",
    "projection": "radix.domain",
    "reaction": "radix.domain",
    "upcaster": "radix.domain",
}

__all__ = [
    "Accepted",
    "ActorConfig",
    "Address",
    "Aggregate",
    "BoundedContext",
    "Client",
    "Command",
    "CommandConflictError",
    "CommandError",
    "CommandFailedError",
    "CommandLogConfig",
    "CommandRejectedError",
    "CommandTimeoutError",
    "Commit",
    "CommitTooLargeError",
    "ConfigError",
    "ConnectOptions",
    "CorruptCommitError",
    "DecodeError",
    "DefinitionError",
    "Delete",
    "DomainError",
    "EmbeddedCluster",
    "EmbeddedNats",
    "Event",
    "EventData",
    "EventStore",
    "InMemoryEventStore",
    "IntakeConfig",
    "InvalidArgumentError",
    "InvalidEventError",
    "InvalidNameError",
    "JetStreamEventStore",
    "KVView",
    "MetricsConfig",
    "NatsServerError",
    "Node",
    "NodeConfig",
    "PlacementConfig",
    "Put",
    "RadixError",
    "Record",
    "SQLiteView",
    "SchemaError",
    "Send",
    "StoreConfig",
    "StoreError",
    "StoreUnavailableError",
    "UnknownTypeError",
    "UnreadableEventError",
    "Update",
    "VersionConflictError",
    "Writer",
    "configure_logging",
    "projection",
    "reaction",
    "upcaster",
]

# `__all__` and `_EXPORTS` name the same names: tests/test_api.py holds them to it.


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'radix' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # loaded once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
