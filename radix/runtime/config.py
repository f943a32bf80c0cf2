"""A node's configuration: one frozen object, nesting one small part per component.

    NodeConfig(node_id="node-a", placement=PlacementConfig(liveness_ttl=2), metrics=MetricsConfig(port=9100))

Every field has a production default; each part checks its fields when it is made and names
the one out of range (`ConfigError`, a `ValueError`). The CLI takes its defaults from here.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Final

from radix.errors import require
from radix.store.jetstream import StoreConfig
from radix.wire.names import validate_node_id

#: Shards per (namespace, context) unless configured or recorded otherwise: enough to spread over a
#: hundred nodes evenly, few enough that every node caches the whole table (docs/placement.md).
DEFAULT_SHARDS: Final = 1024
MAX_SHARDS: Final = 65536

__all__ = [
    "DEFAULT_SHARDS",
    "MAX_SHARDS",
    "ActorConfig",
    "CommandLogConfig",
    "IntakeConfig",
    "MetricsConfig",
    "NodeConfig",
    "PlacementConfig",
    "ProcessingConfig",
]


def _positive(part: object, *names: str) -> None:
    for name in names:
        value = getattr(part, name)
        require(value > 0, f"{type(part).__name__}.{name}", value, "must be positive")


def _at_least(part: object, minimum: int, *names: str) -> None:
    for name in names:
        value = getattr(part, name)
        require(value >= minimum, f"{type(part).__name__}.{name}", value, f"must be at least {minimum}")


@dataclass(frozen=True, kw_only=True)
class ActorConfig:
    """How aggregate actors run: idleness, memory, snapshots, retries and what they remember."""

    idle_timeout: float = 300.0
    """Seconds without a command before an aggregate passivates."""
    max_actors: int = 100_000
    """Live aggregates past which the least recently used idle ones passivate."""
    snapshot_every: int = 100
    """Events between snapshots (0: no snapshots)."""
    retries: int = 5
    """Rounds after a refused append (someone else wrote) before a command is answered `error`."""
    mailbox_size: int = 1024
    """Commands queued per aggregate; more are answered `error` (retry later)."""
    recent_commands: int = 32
    """Refused commands whose replies are kept (and recorded) per aggregate."""
    recent_events: int = 256
    """Latest events a busy actor keeps for conflict checks."""
    group_commit: int = 64
    """Queued commands decided together and written as one commit."""
    dedup_window: float = 120.0
    """Seconds a command id is remembered after it was applied."""
    dedup_max: int = 20_000
    """Command ids remembered per aggregate at most."""

    def __post_init__(self) -> None:
        _positive(self, "idle_timeout", "dedup_window")
        _at_least(self, 1, "max_actors", "mailbox_size", "recent_commands", "recent_events", "group_commit")
        _at_least(self, 0, "snapshot_every", "retries")
        _at_least(self, self.recent_commands, "dedup_max")


@dataclass(frozen=True, kw_only=True)
class PlacementConfig:
    """Liveness, forwarding, rebalancing and handoffs (docs/placement.md)."""

    liveness_ttl: int = 3
    """Seconds before a silent node is presumed dead (whole seconds: JetStream's per-key TTLs)."""
    max_hops: int = 3
    """Forwards of one command before it is answered `error` (retry) rather than looping."""
    forward_timeout: float = 1.0
    """Seconds to wait for the owner to take a forwarded command, per attempt."""
    rebalance_interval: float = 2.0
    """Seconds between rebalancing checks."""
    rebalance_threshold: float = 0.2
    """How many more shards the most loaded node may hold than the least before shards move, as a share of
    the average (at least one shard: `allocation.rebalance_plan`)."""
    rebalance_batch: int = 32
    """Shards moved per rebalancing check at most (0: no rebalancing)."""
    handoff_concurrency: int = 16
    """Shards handed over (or stopped) at once in a drain or a shutdown."""
    shards: int | None = None
    """Shards per (namespace, context): None takes the count recorded in the leases bucket, or
    `DEFAULT_SHARDS` where none is; a count that differs from the recorded one refuses to start
    (docs/placement.md, "Changing the shard count")."""
    suspect_delay: float = 0.1
    """Seconds between two probes of a node's inbox that both found nobody listening, after which the node
    is presumed dead without waiting out its liveness TTL."""

    def __post_init__(self) -> None:
        require(
            isinstance(self.liveness_ttl, int) and self.liveness_ttl >= 1,
            "PlacementConfig.liveness_ttl",
            self.liveness_ttl,
            "must be whole seconds, at least 1 (JetStream's per-key TTL granularity)",
        )
        _positive(self, "max_hops", "forward_timeout", "rebalance_interval", "suspect_delay")
        _at_least(self, 0, "rebalance_threshold", "rebalance_batch")
        _at_least(self, 1, "handoff_concurrency")
        require(
            self.shards is None or (isinstance(self.shards, int) and 1 <= self.shards <= MAX_SHARDS),
            "PlacementConfig.shards",
            self.shards,
            f"must be None (as recorded) or a whole number from 1 to {MAX_SHARDS}",
        )


@dataclass(frozen=True, kw_only=True)
class IntakeConfig:
    """What a node takes from the wire."""

    max_command_bytes: int = 256 * 1024
    """The largest command body taken; larger ones are answered `error`."""
    max_command_id: int = 128
    """The longest `Radix-Command-Id` taken, in bytes."""
    max_header_value: int = 1024
    """The longest `Radix-Issuer` and `Radix-Correlation-Id` taken, in bytes: both are written with every
    event the command causes."""

    def __post_init__(self) -> None:
        _at_least(self, 1, "max_command_bytes", "max_command_id", "max_header_value")


@dataclass(frozen=True, kw_only=True)
class CommandLogConfig:
    """The command log: how long its stream keeps entries, how long a stop waits for their acknowledgement."""

    max_age: float = 7 * 24 * 3600.0
    flush_timeout: float = 5.0

    def __post_init__(self) -> None:
        _positive(self, "max_age", "flush_timeout")


@dataclass(frozen=True, kw_only=True)
class MetricsConfig:
    """The Prometheus endpoint: off unless a port is given (0: any free port)."""

    port: int | None = None
    host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        require(self.port is None or 0 <= self.port < 65536, "MetricsConfig.port", self.port, "must be 0 to 65535")


@dataclass(frozen=True, kw_only=True)
class ProcessingConfig:
    """How a node runs its contexts' reactions and projections (docs/reactions-and-projections.md)."""

    partitions: int = 8
    """Partitions of each context's feed: how many nodes at most share one reaction's or projection's work.
    Fixed once the feed exists."""
    batch: int = 64
    """Events fetched at once by one partition's owner."""
    interval: float = 1.0
    """Seconds between looks at which partitions this node should own."""
    retry_delay: float = 0.2
    """Seconds before the first retry of an event whose handling failed; doubled each time, up to 5 s."""
    command_timeout: float = 10.0
    """Seconds a reaction's command may take to be answered, retries included."""

    def __post_init__(self) -> None:
        _at_least(self, 1, "partitions", "batch")
        _positive(self, "interval", "retry_delay", "command_timeout")


@dataclass(frozen=True, kw_only=True)
class NodeConfig:
    """How a node runs: its id, how long a stop may take, and one part per component."""

    node_id: str = field(default_factory=lambda: f"node-{secrets.token_hex(3)}")
    shutdown_timeout: float = 30.0
    """Seconds a stop (or a drain's handoff of one aggregate) waits for actors to finish."""
    actors: ActorConfig = field(default_factory=ActorConfig)
    placement: PlacementConfig = field(default_factory=PlacementConfig)
    intake: IntakeConfig = field(default_factory=IntakeConfig)
    command_log: CommandLogConfig = field(default_factory=CommandLogConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    processing: ProcessingConfig = field(default_factory=ProcessingConfig)
    strict: bool = False
    """Refuse to start on settings that could lose acknowledged commands (`radix.runtime.checks.unsafe_settings`);
    without it they are logged as warnings."""
    server_monitor: str | None = None
    """The server's HTTP monitoring URL (`http://host:8222`, its `http` setting): the node reads its `/varz`
    at start to check how often JetStream fsyncs, which no client API shows. Unset: not checked."""

    def __post_init__(self) -> None:
        validate_node_id(self.node_id)
        _positive(self, "shutdown_timeout")
        # A reaction's command sent again after a takeover must still be known by its id (docs/guarantees.md).
        redelivery = self.placement.liveness_ttl + 2 * self.processing.interval + self.processing.command_timeout
        require(
            redelivery < self.actors.dedup_window / 2,
            "ActorConfig.dedup_window",
            self.actors.dedup_window,
            f"must be more than twice the longest redelivery of a reaction's command ({redelivery:g} s: the "
            "liveness TTL, two ownership looks and the command time-out)",
        )
