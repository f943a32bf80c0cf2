"""The control payloads of the wire contract: what a node's inbox takes and answers (docs/protocol.md),
and the values of the nodes and leases buckets.

Both sides (a node, and the CLI or any NATS client) use these types, so a payload has one shape.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

__all__ = [
    "FORWARD_TAKEN",
    "ControlAnswer",
    "LeaseValue",
    "MigrateRequest",
    "NodeRecord",
    "ShardCount",
    "StatusReport",
    "control_encoder",
    "lease_decoder",
    "migrate_decoder",
    "node_decoder",
    "shard_count_decoder",
    "status_decoder",
]

#: The answer to a forwarded command, once the receiving node has queued it.
FORWARD_TAKEN: Final = b"ok"


class StatusReport(msgspec.Struct):
    """A node's account of itself (`....status`): incarnations, state, live aggregates, command counts."""

    node: str
    incarnation: dict[str, str]
    state: str
    hosts: list[str]
    live_actors: int
    actors: dict[str, int]
    commands: dict[str, int]
    activations: int
    passivations: int
    migrations: int
    fenced: int
    rate: float
    replayed_events: int = 0
    snapshots_loaded: int = 0
    processors: list[dict[str, Any]] = msgspec.field(default_factory=list)
    """Each reaction and projection partition the node owns: name, kind, partition, position, lag, parked."""
    shards: dict[str, int] = msgspec.field(default_factory=dict)
    """Shards whose lease the node holds, per `namespace/context`."""


class MigrateRequest(msgspec.Struct):
    """Move a live aggregate (`....migrate`) to the node `to`, or to the least loaded one."""

    context: str
    aggregate_type: str
    aggregate_id: str
    to: str | None = None


class ControlAnswer(msgspec.Struct, omit_defaults=True):
    """The answer to a control request: `ok`, and why not (`reason`), or what happened (a migration's
    target `to` and how its actor `ended`; a drain's `node` and `state`)."""

    ok: bool
    reason: str | None = None
    to: str | None = None
    ended: str | None = None
    node: str | None = None
    state: str | None = None


class NodeRecord(msgspec.Struct, frozen=True):
    """A node's liveness value in the nodes bucket: its id, incarnation, contexts and start time."""

    node: str
    incarnation: str
    contexts: list[str]
    started: str


class LeaseValue(msgspec.Struct, frozen=True, omit_defaults=True):
    """A lease's value in the leases bucket: the owning node and its incarnation; and `fenced` once the shard
    was taken over from a node presumed dead: whoever holds it then rewrites an aggregate's refusal record
    before answering for it, through handovers too (the former owner may still hold any of its aggregates)."""

    node: str
    incarnation: str
    fenced: bool = False


class ShardCount(msgspec.Struct, frozen=True):
    """A context's shard count, recorded once under `_shards.{ctx}` in the leases bucket: every node of
    the context places aggregates by it."""

    shards: int


control_encoder: Final = msgspec.json.Encoder()
status_decoder: Final = msgspec.json.Decoder(StatusReport)
migrate_decoder: Final = msgspec.json.Decoder(MigrateRequest)
node_decoder: Final = msgspec.json.Decoder(NodeRecord)
lease_decoder: Final = msgspec.json.Decoder(LeaseValue)
shard_count_decoder: Final = msgspec.json.Decoder(ShardCount)
