"""The runtime: nodes hosting aggregate actors (docs/architecture.md is the map of its modules)."""

from radix.runtime.config import (
    ActorConfig,
    CommandLogConfig,
    IntakeConfig,
    MetricsConfig,
    NodeConfig,
    PlacementConfig,
)
from radix.runtime.node import Node, NodeState
from radix.runtime.tuning import tune_gc

__all__ = [
    "ActorConfig",
    "CommandLogConfig",
    "IntakeConfig",
    "MetricsConfig",
    "Node",
    "NodeConfig",
    "NodeState",
    "PlacementConfig",
    "tune_gc",
]
