"""NATS plumbing with no Radix semantics: connecting, the shared request inbox, publishing with
pre-encoded headers, and embedded nats-servers for tests, the demo and local clusters."""

from radix.transport import guard, speedups
from radix.transport.connection import ConnectOptions, connect
from radix.transport.inbox import Inbox, status_of
from radix.transport.publish import encode_headers, publish
from radix.transport.server import ClusterSpec, EmbeddedCluster, EmbeddedNats, find_nats_server

guard.install()  # a frame nats-py cannot read is dropped, not the end of its read loop
speedups.install()  # nats-py's header parsing, with the same results, quicker

__all__ = [
    "ClusterSpec",
    "ConnectOptions",
    "EmbeddedCluster",
    "EmbeddedNats",
    "Inbox",
    "connect",
    "encode_headers",
    "find_nats_server",
    "publish",
    "status_of",
]
