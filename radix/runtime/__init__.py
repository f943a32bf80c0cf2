"""The runtime: nodes hosting aggregate actors."""

from radix.runtime.node import Node, NodeConfig
from radix.runtime.tuning import tune_gc

__all__ = ["Node", "NodeConfig", "tune_gc"]
