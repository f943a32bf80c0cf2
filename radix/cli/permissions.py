"""`radix permissions`: the NATS permissions a node, a client and a monitor of a namespace need, printed as
nats-server configuration (`radix.runtime.permissions`; docs/security.md)."""

from __future__ import annotations

import argparse

from radix.cli.common import load_context, print_json
from radix.runtime.permissions import client_permissions, monitor_permissions, node_permissions
from radix.wire.names import validate_namespace

__all__ = ["run"]


async def run(args: argparse.Namespace) -> int:
    namespace = validate_namespace(args.namespace)
    contexts = [load_context(spec) for spec in args.context]
    roles = {
        "node": node_permissions(namespace, contexts, replicas=args.replicas),
        "client": client_permissions(namespace),
        "monitor": monitor_permissions(namespace),
    }
    chosen = list(roles) if args.role == "all" else [args.role]
    if args.json:
        print_json({role: {"publish": roles[role].publish, "subscribe": roles[role].subscribe} for role in chosen})
        return 0
    for role in chosen:
        print(f"# a {role} of namespace {namespace!r}: in its user's entry, e.g. {{ user: ..., permissions: ... }}")
        print(roles[role].config())
    return 0
