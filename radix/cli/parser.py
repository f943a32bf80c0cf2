"""The `radix` command line's parser: every command and its options. Defaults come from the
configuration objects, and tool names from `radix.tools.catalog`, so nothing here is repeated."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from radix.cli.common import DEFAULT_URL, URL_FILE
from radix.runtime.config import ActorConfig, MetricsConfig, PlacementConfig, ProcessingConfig
from radix.store.jetstream import StoreConfig
from radix.tools.catalog import KINDS, MUTATIONS, SCENARIOS
from radix.wire.names import everything_filter

__all__ = ["parser"]


def configured(
    parser: argparse.ArgumentParser, flag: str, part: type[object], what: str, **extra: Any
) -> argparse.Action:
    """An option that sets a configuration field (`--idle-timeout` sets `idle_timeout`), with the field's
    default and type."""
    default = getattr(part, flag.removeprefix("--").replace("-", "_"))
    return parser.add_argument(flag, type=type(default), default=default, help=f"{what} (default {default:g})", **extra)


def waiting(parser: argparse.ArgumentParser, default: float, what: str) -> None:
    """The `--timeout` of a command: how long it may take `what`, connecting included."""
    parser.add_argument("--timeout", type=float, default=default, help=f"seconds {what} (default {default:g})")


def _connection_args() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("connection")
    group.add_argument(
        "--nats",
        help="NATS URL(s), comma-separated (default: $RADIX_NATS, the embedded "
        f"server noted in {URL_FILE}, or {DEFAULT_URL})",
    )
    group.add_argument("--user", help="the NATS user (its password: --password-file or $RADIX_NATS_PASSWORD)")
    group.add_argument("--password-file", type=Path, help="a file holding the user's password")
    group.add_argument("--token-file", type=Path, help="a file holding the token (or $RADIX_NATS_TOKEN)")
    group.add_argument("--nkey", type=Path, help="a file holding an NKey seed (SU...)")
    group.add_argument("--creds", type=Path, help="NATS credentials file")
    # Secrets on a command line show in every process listing: refused, saying where to put them.
    group.add_argument("--password", help=argparse.SUPPRESS)
    group.add_argument("--token", help=argparse.SUPPRESS)
    group.add_argument("--tls-ca", type=Path)
    group.add_argument("--tls-cert", type=Path)
    group.add_argument("--tls-key", type=Path)
    return parent


def parser() -> argparse.ArgumentParser:
    """The whole command line: a subcommand per group, connection options where they apply."""
    parser = argparse.ArgumentParser(
        prog="radix", description="Run nodes, send commands, watch and steer a Radix cluster."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    conn = _connection_args()

    demo = commands.add_parser(
        "demo", help="run a three-node cluster on an embedded nats-server, through a crash and a drain"
    )
    demo.add_argument("--items", type=int, default=30, help="aggregates (default 30)")
    demo.add_argument("--seconds", type=float, default=9.0, help="seconds of load in all (default 9)")

    server = commands.add_parser(
        "server", help="run a nats-server for this directory, on its own: a local cluster's, which outlives its nodes"
    )
    server.add_argument("--port", type=int, default=-1, help="the client port on 127.0.0.1 (default: a free one)")

    node = commands.add_parser("node", parents=[conn], help="run a node (SIGTERM drains it)")
    node.add_argument("--namespace", action="append", required=True, help="namespace to serve (repeatable)")
    node.add_argument(
        "--context", action="append", required=True, help="bounded context as module.path[:attribute] (repeatable)"
    )
    node.add_argument("--node-id", help="this node's id (default: random)")
    node.add_argument(
        "--processes",
        type=int,
        default=1,
        metavar="N",
        help="run N node processes as one unit, one per core (ids ID-1 .. ID-N; default 1)",
    )
    configured(node, "--liveness-ttl", PlacementConfig, "seconds before a silent node is presumed dead")
    configured(node, "--idle-timeout", ActorConfig, "seconds before an idle aggregate passivates")
    configured(node, "--max-actors", ActorConfig, "live aggregates past which the least recently used passivate")
    configured(node, "--snapshot-every", ActorConfig, "events between snapshots, 0: none")
    configured(node, "--rebalance-interval", PlacementConfig, "seconds between rebalancing checks")
    node.add_argument(
        "--shards",
        type=int,
        metavar="N",
        help="shards per context (default: as recorded by the first node, else 1024; docs/placement.md)",
    )
    configured(node, "--replicas", StoreConfig, "replicas of streams and buckets", choices=(1, 3, 5))
    configured(node, "--partitions", ProcessingConfig, "partitions of each context's feed (reactions, projections)")
    node.add_argument(
        "--strict", action="store_true", help="refuse to start on unsafe settings (one replica in a cluster, ...)"
    )
    node.add_argument(
        "--server-monitor",
        metavar="URL",
        help="the server's HTTP monitoring URL (http://host:8222), read at start to check how often it fsyncs",
    )
    node.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port")
    node.add_argument("--metrics-host", default=MetricsConfig.host, help="address to serve metrics on")
    node.add_argument("--log-json", action="store_true", help="log JSON lines even on a terminal")
    node.add_argument("--log-level", default="info", help="debug, info, warning or error")

    send = commands.add_parser("send", parents=[conn], help="send a command and print the reply")
    send.add_argument("namespace")
    send.add_argument("context")
    send.add_argument("type", help="aggregate type, e.g. InventoryItem")
    send.add_argument("id", help="aggregate id")
    send.add_argument("body", metavar="COMMAND", help='the command as JSON, e.g. \'{"type": "CheckIn", "count": 3}\'')
    send.add_argument("--expected-version", type=int)
    send.add_argument("--issuer")
    send.add_argument("--command-id")
    send.add_argument("--correlation-id")
    waiting(send, 10.0, "to connect and be answered")

    get = commands.add_parser("get", parents=[conn], help="print an aggregate's version and state, read from its owner")
    get.add_argument("namespace")
    get.add_argument("context")
    get.add_argument("type", help="aggregate type, e.g. InventoryItem")
    get.add_argument("id", help="aggregate id")
    waiting(get, 10.0, "to connect and be answered")

    tail = commands.add_parser("tail", parents=[conn], help="print events and command-log entries as they happen")
    tail.add_argument(
        "pattern",
        nargs="?",
        default=everything_filter(),
        help="NATS subject wildcard, e.g. 'radix.*.inventory.evt.>' (default: everything)",
    )
    tail.add_argument("--from-start", action="store_true", help="replay stored history first")
    tail.add_argument("--json", action="store_true", help="print JSON lines")
    tail.add_argument("--count", type=int, default=0, help="stop after this many items (default: never)")
    tail.add_argument(
        "--context",
        action="append",
        default=[],
        metavar="MODULE[:ATTR]",
        help="decode that context's events with its code, as its nodes read them (repeatable)",
    )
    waiting(tail, 5.0, "to connect")

    schemas = commands.add_parser("schemas", help="event schemas: the registry, code against it, stored versions")
    actions = schemas.add_subparsers(dest="action", required=True, metavar="ACTION")
    listed = actions.add_parser("list", parents=[conn], help="event types and versions, who registered each, when")
    listed.add_argument("--namespace", action="append", help="namespace(s) to show (default: all)")
    checked = actions.add_parser(
        "check", parents=[conn], help="would this code start against the registry and read all it holds? (exit 0/1)"
    )
    checked.add_argument("code", nargs="+", metavar="MODULE[:ATTR]", help="bounded context(s) of the code to deploy")
    checked.add_argument("--namespace", action="append", help="namespace(s) to check against (default: all)")
    scanned = actions.add_parser("scan", parents=[conn], help="which stored histories hold which event versions")
    scanned.add_argument("--namespace", action="append", help="namespace(s) to scan (default: all)")
    scanned.add_argument(
        "--code", metavar="MODULE[:ATTR]", help="also name the aggregates this context's code could not serve (exit 1)"
    )
    for action, seconds, what in (
        (listed, 5.0, "to connect and read the registry"),
        (checked, 5.0, "to connect and read the registry"),
        (scanned, 30.0, "to connect, and to wait for each message of the scan"),
    ):
        action.add_argument("--json", action="store_true", help="print JSON")
        waiting(action, seconds, what)

    for kind in ("reaction", "projection"):
        processor = commands.add_parser(kind, help=f"the events a {kind} parked: list them, retry or skip them")
        actions = processor.add_subparsers(dest="action", required=True, metavar="ACTION")
        for verb, what in (
            ("parked", "list the parked events"),
            ("retry", "try the parked events again, in order (after a fix)"),
            ("skip", "drop the parked events, unhandled, and let their aggregates go on"),
        ):
            chosen = actions.add_parser(verb, parents=[conn], help=what)
            chosen.add_argument("name", help=f"the {kind}'s name")
            chosen.add_argument("--namespace", required=True)
            chosen.add_argument("--context", required=True, help="the context that declares it")
            chosen.add_argument("--aggregate", help="only the events of this aggregate, as TYPE/ID")
            chosen.add_argument("--json", action="store_true", help="print JSON")
            waiting(chosen, 5.0, "to connect and read the parked events")
        if kind == "projection":
            for verb, what in (
                ("reset", "drop the read model and its checkpoints; the nodes build it again from the start"),
                ("rebuild", "reset, then show progress until the projection has caught up"),
            ):
                chosen = actions.add_parser(verb, parents=[conn], help=what)
                chosen.add_argument("name", help="the projection's name")
                chosen.add_argument("--namespace", required=True)
                chosen.add_argument("--code", required=True, metavar="MODULE[:ATTR]", help="the context declaring it")
                chosen.add_argument("--json", action="store_true", help="print JSON")
                waiting(chosen, 300.0, "to connect, pause, reset and (rebuild) catch up")

    merge = commands.add_parser(
        "merge", parents=[conn], help="run a reaction over the stored history, for a stage of the aggregates"
    )
    merge.add_argument("reaction", help="the reaction's name (one declared live=False, such as retire-orders)")
    merge.add_argument("--namespace", required=True)
    merge.add_argument("--code", required=True, metavar="MODULE[:ATTR]", help="the context declaring it")
    merge.add_argument("--ids", help="this stage: these aggregate ids, comma-separated")
    merge.add_argument("--fraction", type=float, help="this stage: this share of the aggregates (0 to 1, stable)")
    merge.add_argument("--where", metavar="MODULE:FUNCTION", help="this stage: the events this predicate takes")
    merge.add_argument("--stage", help="the stage's name (default: made from the choice; 'all' without one)")
    merge.add_argument("--replicas", type=int, default=1, help="replicas of the progress bucket if it is created")
    merge.add_argument("--command-timeout", type=float, default=10.0, help="seconds a command may take (10)")
    merge.add_argument("--rate", type=float, help="events handled a second at most (default: as fast as answered)")
    merge.add_argument("--json", action="store_true", help="print JSON")
    waiting(merge, 10.0, "to connect and read the progress (the run itself has no limit)")

    permissions = commands.add_parser(
        "permissions", help="the NATS permissions a node, a client and a monitor of a namespace need"
    )
    permissions.add_argument("--namespace", required=True)
    permissions.add_argument(
        "--context", action="append", required=True, help="a context the nodes serve, as module.path[:attribute]"
    )
    permissions.add_argument("--role", choices=("all", "node", "client", "monitor"), default="all")
    permissions.add_argument("--replicas", type=int, default=1, help="replicas of the streams and buckets (1)")
    permissions.add_argument("--json", action="store_true", help="print JSON")

    status = commands.add_parser("status", parents=[conn], help="live nodes, their aggregates and command rates")
    status.add_argument("--namespace", action="append", help="namespace(s) to show (default: all)")
    status.add_argument("--json", action="store_true", help="print JSON")
    waiting(status, 5.0, "to connect")

    migrate = commands.add_parser("migrate", parents=[conn], help="move a live aggregate to another node")
    migrate.add_argument("aggregate", help="NAMESPACE/CONTEXT/TYPE/ID")
    migrate.add_argument("--to", help="target node id (default: the least loaded)")
    migrate.add_argument("--lease-key", help="the lease key, if the aggregate type overrides placement_key")
    waiting(migrate, 35.0, "to connect and see the move done")

    drain = commands.add_parser("drain", parents=[conn], help="hand a node's aggregates to others and stop it")
    drain.add_argument("node")
    drain.add_argument("--namespace", required=True, help="a namespace the node serves")
    waiting(drain, 60.0, "to connect and see the node drained")

    chaos = commands.add_parser(
        "chaos", help="fault-inject a 3-server NATS cluster and Radix nodes; check the recorded history"
    )
    chaos.add_argument("--seed", type=int, help="replay this seed (default: a random one, printed)")
    chaos.add_argument("--soak", type=float, metavar="SECONDS", help="run fresh seeds until this many seconds pass")
    chaos.add_argument("--faults", type=int, default=12, help="faults per run (default 12)")
    chaos.add_argument("--kinds", help=f"comma-separated fault kinds among {', '.join(KINDS)} (default: all)")
    chaos.add_argument("--mutation", choices=MUTATIONS, help="run a test build with this deliberate bug")
    chaos.add_argument("--nodes", type=int, default=3, help="Radix node processes (default 3)")
    chaos.add_argument("--aim-at-owners", action="store_true", help="node faults hit the node holding the most leases")
    chaos.add_argument("--out", type=Path, default=Path("chaos-out"), help="folder for histories and logs")
    chaos.set_defaults(log_level="error")  # the harness reports progress itself; reconnects are expected

    bench = commands.add_parser("bench", help="measure Radix against raw JetStream, side by side")
    bench.add_argument("--nats", help="NATS URL (default: an embedded nats-server)")
    bench.add_argument("--quick", action="store_true", help="small sizes, one run (for CI)")
    bench.add_argument("--runs", type=int, help="repetitions per scenario; medians are reported (default 3)")
    bench.add_argument("--only", help=f"comma-separated scenarios among {', '.join(SCENARIOS)}")
    bench.add_argument("--json", action="store_true", help="print a JSON list, one object per scenario")
    return parser
