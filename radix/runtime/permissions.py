"""The NATS permissions each Radix role needs, and no more (docs/security.md, "Permissions within an account").

A node's (`node_permissions`): every grant names the namespace, a subject kind, or one of Radix's streams and
buckets (`radix.wire.names`). Stream and bucket names are single subject tokens and a NATS wildcard matches
whole tokens only, so each stream is granted by its full name, with only the JetStream verbs a node uses on
it (no STREAM.DELETE or PURGE). A client's (`client_permissions`) sends commands and reads; a monitor's
(`monitor_permissions`) watches events and the command log. `radix permissions` prints them as nats-server
configuration. `tests/transport/test_node_permissions.py` runs two nodes under exactly these and checks the
server refused them nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from radix.domain import BoundedContext, KVView
from radix.observability.micro import SERVICE_NAME
from radix.wire.names import (
    COMMANDS,
    EVENTS,
    FORWARD,
    LOG,
    PING,
    READS,
    commands_stream,
    context_filter,
    direct_get,
    events_stream,
    feed_stream,
    kv_filter,
    kv_stream,
    leases_bucket,
    micro_subjects,
    node_inbox_filter,
    node_subject,
    nodes_bucket,
    parked_bucket,
    queue_group,
    refusals_bucket,
    schemas_bucket,
    snapshots_bucket,
    view_bucket,
)

__all__ = ["Permissions", "client_permissions", "monitor_permissions", "node_permissions"]


@dataclass(frozen=True)
class Permissions:
    """The subjects a NATS user may publish to and subscribe to (`allow` lists; a queue subscription as
    `"subject queue"`)."""

    publish: list[str]
    subscribe: list[str]

    def config(self) -> str:
        """As a nats-server `permissions` block."""

        def allow(subjects: list[str]) -> str:
            if not subjects:  # an empty allow list would restrict nothing
                return '{ deny: [">"] }'
            return "{ allow: [" + "".join(f"\n    {json.dumps(s)}" for s in subjects) + "\n  ] }"

        return f"permissions: {{\n  publish: {allow(self.publish)}\n  subscribe: {allow(self.subscribe)}\n}}"


API = "$JS.API"
INBOXES = "_INBOX.>"  # nats-py's default inbox prefix; Radix's connections keep it


def node_permissions(namespace: str, contexts: Sequence[BoundedContext], *, replicas: int = 1) -> Permissions:
    """What a node serving `contexts` in `namespace` publishes and subscribes to.

    With `replicas` above 1 a node also reads streams and buckets as their leaders have them (`STREAM.MSG.GET`).
    Flow control replies (`$JS.FC`) come only once about a megabyte waits in a watch or a replay.
    """
    publish = [
        INBOXES,  # replies: to clients' commands and reads, forwards, control and micro requests
        node_subject(namespace, "*", FORWARD),  # a command forwarded to its owner's inbox
        node_subject(namespace, "*", PING),  # the probe of an owner's inbox that presumes it dead if nobody listens
        f"{API}.INFO",  # the start-up check that JetStream answers (account info)
        # nats-py's js.subscribe(subject) looks the subject's stream up first (KV watches, the ordered
        # replay of a long history); the subject is in the request's body, so this cannot name a stream.
        f"{API}.STREAM.NAMES",
    ]
    if any(context.reactions for context in contexts):
        publish.append(context_filter(namespace, "*", COMMANDS))  # a reaction's commands (Send.context: any)
    subscribe = [
        INBOXES,  # answers to its requests, and the deliveries of its consumers (KV watches, feed fetches)
        node_inbox_filter(namespace, "*"),  # its own inbox (fwd, status, migrate, drain): one user, any node id
        *micro_subjects(SERVICE_NAME, "*"),  # $SRV.PING / INFO / STATS, so `nats micro ls` sees the node
    ]

    def stream(name: str, *verbs: str, leader: bool = False) -> None:
        """Create it unless it exists (INFO first); `leader`: read as its leader has it, when replicated
        (a direct get may be answered by a replica that lags)."""
        publish.extend(f"{API}.STREAM.{verb}.{name}" for verb in ("INFO", "CREATE", *verbs))
        if leader and replicas > 1:
            publish.append(f"{API}.STREAM.MSG.GET.{name}")

    def watched(name: str) -> None:
        """Read with an ordered consumer: created anew on a gap, answered when it asks for flow control."""
        publish.extend([f"{API}.CONSUMER.CREATE.{name}", f"$JS.FC.{name}.>"])

    def bucket(name: str, *verbs: str, watch: bool = False, leader: bool = True) -> None:
        stream(kv_stream(name), *verbs, leader=leader)
        publish.extend([kv_filter(name), f"{direct_get(kv_stream(name))}.>"])  # writes (CAS, TTLs); direct gets
        if watch:
            watched(kv_stream(name))

    bucket(leases_bucket(namespace), watch=True)  # aggregate and partition leases, watched into a cache
    bucket(nodes_bucket(namespace), watch=True)  # liveness, watched for membership
    bucket(schemas_bucket(namespace), watch=True)  # event schemas, registered and checked at start
    bucket(parked_bucket(namespace), watch=True)  # events a reaction or projection gave up on
    bucket(snapshots_bucket(namespace), leader=False)
    bucket(refusals_bucket(namespace))
    for context in contexts:
        ctx = context.name
        events = events_stream(namespace, ctx)
        publish += [context_filter(namespace, ctx, EVENTS), context_filter(namespace, ctx, LOG)]  # appends, log
        subscribe += [
            f"{context_filter(namespace, ctx, kind)} {queue_group(namespace, ctx)}"  # only in the queue group
            for kind in (COMMANDS, READS)
        ]
        stream(events, leader=True)
        publish += [direct_get(events), f"{direct_get(events)}.>"]  # batched reads; an aggregate's last commit
        watched(events)  # a history longer than `StoreConfig.ordered_consumer_above` is replayed so
        stream(commands_stream(namespace, ctx))
        if context.reactions or context.projections:
            feed = feed_stream(namespace, ctx)
            stream(feed)
            publish += [
                f"{API}.CONSUMER.LIST.{feed}",  # a new owner of a partition finds the former owner's consumer,
                f"{API}.CONSUMER.DELETE.{feed}.*",  # and removes it
                f"{API}.CONSUMER.DURABLE.CREATE.{feed}.*",  # its own, named for its lease's epoch
                f"{API}.CONSUMER.MSG.NEXT.{feed}.*",  # fetches
                f"{API}.CONSUMER.INFO.{feed}.*",  # the partition's lag
                f"$JS.ACK.{feed}.>",  # acknowledgements
                f"{API}.STREAM.MSG.GET.{feed}",  # a parked event read again when an operator retries it
            ]
        for projection in context.projections:
            if isinstance(projection.into, KVView):
                bucket(view_bucket(namespace, ctx, projection.name), "UPDATE")  # UPDATE: atomic batches on
    return Permissions(publish, subscribe)


def client_permissions(namespace: str) -> Permissions:
    """What a client of `namespace` needs: to send commands and reads to any of its contexts, and to hear
    the answers on its inbox."""
    return Permissions([context_filter(namespace, "*", COMMANDS), context_filter(namespace, "*", READS)], [INBOXES])


def monitor_permissions(namespace: str) -> Permissions:
    """What a monitor of `namespace` needs to watch its events and its command log as they happen (`radix tail`
    over plain subscriptions): nothing to publish."""
    return Permissions([], [context_filter(namespace, "*", EVENTS), context_filter(namespace, "*", LOG)])
