"""The runtime: nodes hosting aggregate actors."""

from radix.runtime.node import Node, NodeConfig

__all__ = ["Node", "NodeConfig"]
