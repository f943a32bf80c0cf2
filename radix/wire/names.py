"""Names: validation of every name, and every subject, stream, bucket, key and queue group built from them.

This is the only module that spells a NATS subject, stream, bucket, key-value key or queue group,
Radix's own and the JetStream API's that Radix calls. Names are checked before anything is built
from them, so a bad name is a clear error to whoever supplied it rather than a wildcard
subscription or a misrouted message. It imports nothing but the error tree: the domain
validates its names here.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import Final, NamedTuple

from radix.errors import InvalidNameError

__all__ = [
    "COMMANDS",
    "DRAIN",
    "EVENTS",
    "FEED",
    "FORWARD",
    "LOG",
    "MIGRATE",
    "PING",
    "PREFIX",
    "READS",
    "STATUS",
    "Address",
    "CommandSubject",
    "aggregate_key",
    "command_subject",
    "commands_stream",
    "context_filter",
    "context_of_events_stream",
    "default_placement_key",
    "direct_get",
    "event_subject",
    "events_stream",
    "everything_filter",
    "feed_filter",
    "feed_stream",
    "feed_transform",
    "invalid_log_subject",
    "is_lease_key",
    "is_radix_stream",
    "kv_filter",
    "kv_stream",
    "kv_subject",
    "lease_key",
    "leases_bucket",
    "log_subject",
    "micro_subjects",
    "namespace_filter",
    "namespace_of_nodes_bucket",
    "node_inbox",
    "node_inbox_filter",
    "node_subject",
    "node_verb",
    "nodes_bucket",
    "parked_bucket",
    "parked_key",
    "parse_command_subject",
    "parse_feed_subject",
    "parse_stored_subject",
    "processor_consumer",
    "processor_consumer_prefix",
    "processor_lease_key",
    "query_subject",
    "queue_group",
    "refusals_bucket",
    "schema_key",
    "schema_keys",
    "schemas_bucket",
    "shard_of",
    "shard_of_lease_key",
    "shards_key",
    "snapshots_bucket",
    "validate_aggregate_id",
    "validate_aggregate_type",
    "validate_context",
    "validate_event_type",
    "validate_namespace",
    "validate_node_id",
    "validate_processor",
    "view_bucket",
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


def validate_processor(value: object) -> str:
    """Return `value` if it is a valid reaction or projection name, else raise `InvalidNameError`."""
    return _check(
        "reaction or projection name",
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


def validate_event_type(value: object) -> str:
    """Return `value` if it is a valid event type name (it is part of a schema registry key), else raise
    `InvalidNameError`."""
    return _check("event type", value, _TYPE, MAX_TYPE_LEN, "use an identifier: a letter, then letters, digits or '_'")


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


# -- subjects of one aggregate ---------------------------------------------------------------


def _of_aggregate(address: Address, kind: str) -> str:
    a = address
    return f"{_scoped(a.namespace, a.context)}.{kind}.{a.aggregate_type}.{a.aggregate_id}"


def event_subject(address: Address) -> str:
    """The subject of one aggregate's event stream: one subject per aggregate."""
    return _of_aggregate(address, EVENTS)


def command_subject(address: Address) -> str:
    """The request/reply subject that commands to one aggregate are sent to."""
    return _of_aggregate(address, COMMANDS)


def log_subject(address: Address) -> str:
    """The subject of one aggregate's command-log entries."""
    return _of_aggregate(address, LOG)


def invalid_log_subject(namespace: str, context: str) -> str:
    """Where commands sent to an invalid address are logged (no aggregate subject can be built for them)."""
    return f"{_scoped(namespace, context)}.log._invalid"


def query_subject(address: Address) -> str:
    """The request/reply subject that reads of one aggregate's state are sent to."""
    return _of_aggregate(address, READS)


#: The kinds of subject in a context: commands, reads, stored events, command-log entries.
COMMANDS: Final = "cmd"
READS: Final = "get"
EVENTS: Final = "evt"
LOG: Final = "log"
FEED: Final = "feed"


class CommandSubject(NamedTuple):
    """A subject read as a request to a node: its namespace, context and kind (`COMMANDS`, `READS`), then
    (when it has them) the aggregate type and the aggregate id, not yet validated (an id with a `.` is
    several tokens)."""

    namespace: str
    context: str
    kind: str | None
    aggregate_type: str | None
    aggregate_id: str | None


def parse_command_subject(subject: str) -> CommandSubject | None:
    """The parts of a `radix.{ns}.{ctx}.{kind}.{Type}.{id}` subject, or None if it has no namespace and context.

    The kind, type and id are None when missing.
    """
    tokens = subject.split(".")
    if len(tokens) < 3 or tokens[0] != PREFIX:
        return None
    return CommandSubject(
        tokens[1],
        tokens[2],
        tokens[3] if len(tokens) > 3 else None,
        tokens[4] if len(tokens) > 4 else None,
        ".".join(tokens[5:]) if len(tokens) > 5 else None,
    )


def parse_stored_subject(subject: str) -> tuple[str, str, str, str] | None:
    """`(namespace, context, kind, aggregate)` of a Radix subject (`kind` is `evt`, `cmd` or `log`;
    `aggregate` is `Type/id`), or None if it is not one."""
    tokens = subject.split(".")
    if len(tokens) < 5 or tokens[0] != PREFIX:
        return None
    return tokens[1], tokens[2], tokens[3], "/".join(tokens[4:])


# -- wildcards, streams, queue groups --------------------------------------------------------


def protected_subject(subject: str) -> bool:
    """Whether a message published to `subject` could land in Radix's own streams and buckets or reach
    the server's APIs: anything under `radix.` and every `$` subject (`$JS`, `$KV`, `$SYS`, ...). A reply
    subject never is one, so a command asking to be answered there is dropped."""
    return subject.startswith((f"{PREFIX}.", "$"))


def context_filter(namespace: str, context: str, kind: str) -> str:
    """A wildcard over one kind (`evt`, `cmd`, `log`) of subject in one context."""
    return f"{_scoped(namespace, context)}.{kind}.>"


def everything_filter() -> str:
    """A wildcard over everything Radix publishes, in every namespace."""
    return f"{PREFIX}.>"


def namespace_filter(namespace: str) -> str:
    """A wildcard over everything Radix publishes in one namespace."""
    return f"{PREFIX}.{namespace}.>"


def queue_group(namespace: str, context: str) -> str:
    """The queue group in which every node of a context takes its commands: each command goes to one node."""
    return _scoped(namespace, context)


def events_stream(namespace: str, context: str) -> str:
    """The stream holding one context's events in one namespace."""
    return f"{PREFIX}_{namespace}_{context}_events"


def context_of_events_stream(namespace: str, stream: str) -> str | None:
    """The context whose events a stream of the namespace holds (`radix_{ns}_{ctx}_events`), or None."""
    head, tail = f"{PREFIX}_{namespace}_", "_events"
    if stream.startswith(head) and stream.endswith(tail) and len(stream) > len(head) + len(tail):
        return stream[len(head) : -len(tail)]
    return None


def feed_stream(namespace: str, context: str) -> str:
    """The stream that copies one context's events, partitioned, for its reactions and projections."""
    return f"{PREFIX}_{namespace}_{context}_feed"


def feed_transform(namespace: str, context: str, partitions: int) -> tuple[str, str]:
    """How the feed copies an event subject: `radix.{ns}.{ctx}.evt.{Type}.{id}` to
    `radix.{ns}.{ctx}.feed.{p}.{Type}.{id}`, `p` the server's hash of `{Type}` and `{id}` into `partitions`."""
    scoped = _scoped(namespace, context)
    return (
        f"{scoped}.{EVENTS}.*.*",
        f"{scoped}.{FEED}.{{{{partition({partitions},1,2)}}}}.{{{{wildcard(1)}}}}.{{{{wildcard(2)}}}}",
    )


def feed_filter(namespace: str, context: str, partition: int) -> str:
    """The feed subjects of one partition."""
    return f"{_scoped(namespace, context)}.{FEED}.{partition}.>"


def parse_feed_subject(subject: str) -> tuple[int, str, str] | None:
    """`(partition, aggregate type, aggregate id)` of a feed subject, or None if it is not one."""
    tokens = subject.split(".")
    if len(tokens) != 7 or tokens[0] != PREFIX or tokens[3] != FEED or not tokens[4].isdigit():
        return None
    return int(tokens[4]), tokens[5], tokens[6]


def processor_consumer(processor: str, partition: int, epoch: int) -> str:
    """The durable consumer one owner of a processor's partition reads the feed with (`epoch`: its lease's)."""
    return f"{processor_consumer_prefix(processor, partition)}{epoch}"


def processor_consumer_prefix(processor: str, partition: int) -> str:
    """What the names of every consumer of one processor's partition begin with."""
    return f"{PREFIX}-{processor}-p{partition}-e"


def processor_lease_key(context: str, processor: str, partition: int) -> str:
    """The lease of one partition of a context's reaction or projection, in the leases bucket. It starts
    with `_processors`, which no context is named, so aggregate leases are counted without it."""
    return f"_processors.{context}.{processor}.{partition}"


def parked_bucket(namespace: str) -> str:
    """The KV bucket of parked events (those a reaction or projection gave up on), by `{ctx}.{name}.{position}`."""
    return f"{PREFIX}_{namespace}_parked"


def merges_bucket(namespace: str) -> str:
    """The KV bucket where `radix merge` keeps each stage's progress, by `{ctx}.{reaction}.{stage}`."""
    return f"{PREFIX}_{namespace}_merges"


def parked_key(context: str, processor: str, position: int) -> str:
    return f"{context}.{processor}.{position:012d}"


def view_bucket(namespace: str, context: str, projection: str) -> str:
    """The KV bucket a projection into a key-value view keeps its read model and checkpoints in."""
    return f"{PREFIX}_{namespace}_{context}_view_{projection}"


def commands_stream(namespace: str, context: str) -> str:
    """The stream holding one context's command log in one namespace."""
    return f"{PREFIX}_{namespace}_{context}_commands"


def is_radix_stream(stream: str) -> bool:
    """Whether a stream is one of Radix's own (events or command log)."""
    return stream.startswith(f"{PREFIX}_")


# -- node inboxes ------------------------------------------------------------------------------

#: The verbs of a node's inbox (docs/protocol.md): a forwarded command, and the control requests.
FORWARD: Final = "fwd"
STATUS: Final = "status"
MIGRATE: Final = "migrate"
DRAIN: Final = "drain"
PING: Final = "ping"


def node_inbox(namespace: str, node_id: str) -> str:
    """The subject prefix of one node's inbox; a verb follows it."""
    return f"{PREFIX}.{namespace}._node.{node_id}"


def node_inbox_filter(namespace: str, node_id: str) -> str:
    """A wildcard over one node's inbox in a namespace: what the node listens on."""
    return f"{node_inbox(namespace, node_id)}.>"


def node_subject(namespace: str, node_id: str, verb: str) -> str:
    """The subject of one verb (`FORWARD`, `STATUS`, `MIGRATE`, `DRAIN`) of a node's inbox."""
    return f"{node_inbox(namespace, node_id)}.{verb}"


def node_verb(subject: str) -> tuple[str, str]:
    """`(namespace, verb)` of a subject in a node's inbox."""
    return subject.split(".", 2)[1], subject.rpartition(".")[2]


# -- key-value buckets and their keys ----------------------------------------------------------


def leases_bucket(namespace: str) -> str:
    """The KV bucket of aggregate ownership leases."""
    return f"{PREFIX}_{namespace}_leases"


def nodes_bucket(namespace: str) -> str:
    """The KV bucket of node liveness keys (one per node: the node id)."""
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


def schema_key(context: str, event_type: str, major: int, minor: int) -> str:
    """The key of one event schema version in the schemas bucket: `{ctx}.{Type}.{major}.{minor}`."""
    return f"{context}.{event_type}.{major}.{minor}"


def schema_keys(context: str | None = None) -> str:
    """A key filter over the schemas bucket: every context's schemas, or one context's."""
    return f"{context}.>" if context is not None else ">"


def namespace_of_nodes_bucket(stream: str) -> str | None:
    """The namespace whose nodes bucket a stream holds (`KV_radix_{ns}_nodes`), or None if it holds none."""
    head, tail = kv_stream(f"{PREFIX}_"), "_nodes"
    if stream.startswith(head) and stream.endswith(tail) and len(stream) > len(head) + len(tail):
        return stream[len(head) : -len(tail)]
    return None


def aggregate_key(address: Address) -> str:
    """An aggregate's key in a per-namespace bucket (snapshots, refusals): `{ctx}.{Type}.{id}`."""
    return f"{address.context}.{address.aggregate_type}.{address.aggregate_id}"


def default_placement_key(aggregate_type: str, aggregate_id: str) -> str:
    """The placement key of an aggregate that groups with no other: `{Type}.{id}`."""
    return f"{aggregate_type}.{aggregate_id}"


def shard_of(placement_key: str, shards: int) -> int:
    """The shard a placement key falls in: CRC-32 (IEEE, as `zlib.crc32`) of its UTF-8 bytes, modulo the
    context's shard count. Stable across processes and languages, so any client can compute it."""
    return zlib.crc32(placement_key.encode()) % shards


def lease_key(context: str, shard: int) -> str:
    """The key of a shard's lease in the leases bucket: `{ctx}.{shard}` (no aggregate type starts with a
    digit, so no key of an older per-aggregate lease, `{ctx}.{Type}.{id}`, has this form)."""
    return f"{context}.{shard}"


def shard_of_lease_key(key: str) -> tuple[str, int] | None:
    """The context and shard of a shard lease's key; None for any other key of the leases bucket."""
    context, _, shard = key.partition(".")
    return (context, int(shard)) if shard.isdigit() and context[:1] != "_" else None


def is_lease_key(key: str) -> bool:
    """Whether a key of the leases bucket is a lease (a shard's, or a processor partition's)."""
    return shard_of_lease_key(key) is not None or key.startswith("_processors.")


def shards_key(context: str) -> str:
    """The key in the leases bucket that records a context's shard count (`_shards.{ctx}`): it starts with
    `_`, which no context does."""
    return f"_shards.{context}"


# -- the JetStream and NATS services Radix calls -----------------------------------------------


def kv_stream(bucket: str) -> str:
    """The stream behind a KV bucket."""
    return f"KV_{bucket}"


def kv_subject(bucket: str, key: str) -> str:
    """The subject of one key of a KV bucket."""
    return f"$KV.{bucket}.{key}"


def kv_filter(bucket: str) -> str:
    """A wildcard over every key of a KV bucket."""
    return f"$KV.{bucket}.>"


def direct_get(stream: str, subject: str | None = None) -> str:
    """The direct-get API subject of a stream; with `subject`, the get of that subject's last message."""
    base = f"$JS.API.DIRECT.GET.{stream}"
    return base if subject is None else f"{base}.{subject}"


def micro_subjects(service: str, instance: str) -> list[str]:
    """The NATS micro discovery subjects one service instance answers: PING, INFO and STATS, for all
    services, for the service, and for the instance."""
    return [
        subject
        for verb in ("PING", "INFO", "STATS")
        for subject in (f"$SRV.{verb}", f"$SRV.{verb}.{service}", f"$SRV.{verb}.{service}.{instance}")
    ]
