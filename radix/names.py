"""Names: validation of every name, and every subject, stream and bucket built from them.

This is the only module that spells a NATS subject, stream or bucket name. Names are
checked before anything is built from them, so a bad name is a clear error to whoever
supplied it rather than a wildcard subscription or a misrouted message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from radix.errors import InvalidNameError

__all__ = [
    "PREFIX",
    "Address",
    "command_subject",
    "commands_stream",
    "context_filter",
    "event_subject",
    "events_stream",
    "invalid_log_subject",
    "leases_bucket",
    "log_subject",
    "namespace_filter",
    "node_inbox",
    "nodes_bucket",
    "refusals_bucket",
    "schemas_bucket",
    "snapshots_bucket",
    "validate_aggregate_id",
    "validate_aggregate_type",
    "validate_context",
    "validate_namespace",
    "validate_node_id",
]

PREFIX: Final = "radix"

MAX_SCOPE_LEN: Final = 32
MAX_TYPE_LEN: Final = 64
MAX_ID_LEN: Final = 128

# Namespaces and contexts become parts of stream and bucket names joined by "_",
# so "_" is not allowed in them: `radix_{ns}_{ctx}_events` then parses one way only.
_SCOPE = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")
_TYPE = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
# An aggregate id is one subject token and, in later layers, part of a KV key, so it
# takes the characters both allow (KV keys allow `-/_=.` and alphanumerics; "." would
# split the subject token).
_ID = re.compile(r"[A-Za-z0-9_=/-]+")


def _check(kind: str, value: object, pattern: re.Pattern[str], limit: int, rule: str) -> str:
    if not isinstance(value, str):
        raise InvalidNameError(kind, value, "must be a string")
    if not value:
        raise InvalidNameError(kind, value, "must not be empty")
    if len(value) > limit:
        raise InvalidNameError(kind, value, f"must be at most {limit} characters")
    if pattern.fullmatch(value) is None:
        raise InvalidNameError(kind, value, rule)
    return value


def validate_namespace(value: object) -> str:
    """Return `value` if it is a valid namespace, else raise `InvalidNameError`."""
    return _check(
        "namespace",
        value,
        _SCOPE,
        MAX_SCOPE_LEN,
        "use lowercase letters, digits and '-', starting and ending with a letter or digit",
    )


def validate_context(value: object) -> str:
    """Return `value` if it is a valid bounded-context name, else raise `InvalidNameError`."""
    return _check(
        "context",
        value,
        _SCOPE,
        MAX_SCOPE_LEN,
        "use lowercase letters, digits and '-', starting and ending with a letter or digit",
    )


def validate_node_id(value: object) -> str:
    """Return `value` if it is a valid node id, else raise `InvalidNameError`."""
    return _check(
        "node id",
        value,
        _SCOPE,
        MAX_SCOPE_LEN,
        "use lowercase letters, digits and '-', starting and ending with a letter or digit",
    )


def validate_aggregate_type(value: object) -> str:
    """Return `value` if it is a valid aggregate type name, else raise `InvalidNameError`."""
    return _check(
        "aggregate type",
        value,
        _TYPE,
        MAX_TYPE_LEN,
        "use an identifier: a letter, then letters, digits or '_'",
    )


def validate_aggregate_id(value: object) -> str:
    """Return `value` if it is a valid aggregate id, else raise `InvalidNameError`."""
    return _check(
        "aggregate id",
        value,
        _ID,
        MAX_ID_LEN,
        "use letters, digits and '-', '_', '=', '/' (no '.', '*', '>' or whitespace)",
    )


@dataclass(frozen=True, slots=True)
class Address:
    """Where one aggregate lives: namespace, bounded context, aggregate type and id."""

    namespace: str
    context: str
    aggregate_type: str
    aggregate_id: str

    def __post_init__(self) -> None:
        validate_namespace(self.namespace)
        validate_context(self.context)
        validate_aggregate_type(self.aggregate_type)
        validate_aggregate_id(self.aggregate_id)

    def __str__(self) -> str:
        return f"{self.namespace}/{self.context}/{self.aggregate_type}/{self.aggregate_id}"


def _scoped(namespace: str, context: str) -> str:
    return f"{PREFIX}.{namespace}.{context}"


def event_subject(address: Address) -> str:
    """The subject of one aggregate's event stream: one subject per aggregate."""
    a = address
    return f"{_scoped(a.namespace, a.context)}.evt.{a.aggregate_type}.{a.aggregate_id}"


def command_subject(address: Address) -> str:
    """The request/reply subject that commands to one aggregate are sent to."""
    a = address
    return f"{_scoped(a.namespace, a.context)}.cmd.{a.aggregate_type}.{a.aggregate_id}"


def log_subject(address: Address) -> str:
    """The subject of one aggregate's command-log entries."""
    a = address
    return f"{_scoped(a.namespace, a.context)}.log.{a.aggregate_type}.{a.aggregate_id}"


def invalid_log_subject(namespace: str, context: str) -> str:
    """Where commands sent to an invalid address are logged (no aggregate subject can be built for them)."""
    return f"{_scoped(namespace, context)}.log._invalid"


def context_filter(namespace: str, context: str, kind: str) -> str:
    """A wildcard over one kind (`evt`, `cmd`, `log`) of subject in one context."""
    return f"{_scoped(namespace, context)}.{kind}.>"


def namespace_filter(namespace: str) -> str:
    """A wildcard over everything Radix publishes in one namespace."""
    return f"{PREFIX}.{namespace}.>"


def events_stream(namespace: str, context: str) -> str:
    """The stream holding one context's events in one namespace."""
    return f"{PREFIX}_{namespace}_{context}_events"


def commands_stream(namespace: str, context: str) -> str:
    """The stream holding one context's command log in one namespace."""
    return f"{PREFIX}_{namespace}_{context}_commands"


def node_inbox(namespace: str, node_id: str) -> str:
    """The subject prefix of one node's inbox; what follows is the node's own routing."""
    return f"{PREFIX}.{namespace}._node.{node_id}"


def leases_bucket(namespace: str) -> str:
    """The KV bucket of aggregate ownership leases."""
    return f"{PREFIX}_{namespace}_leases"


def nodes_bucket(namespace: str) -> str:
    """The KV bucket of node liveness keys."""
    return f"{PREFIX}_{namespace}_nodes"


def snapshots_bucket(namespace: str) -> str:
    """The KV bucket of aggregate snapshots."""
    return f"{PREFIX}_{namespace}_snapshots"


def refusals_bucket(namespace: str) -> str:
    """The KV bucket of the commands each aggregate refused lately."""
    return f"{PREFIX}_{namespace}_refusals"


def schemas_bucket(namespace: str) -> str:
    """The KV bucket of event schemas."""
    return f"{PREFIX}_{namespace}_schemas"
