"""The NATS micro protocol (`$SRV.PING`, `$SRV.INFO`, `$SRV.STATS`) for a node, so `nats micro ls` sees it.

nats-py's `nats.micro.Service` owns the subscriptions of its endpoints and, on stop,
unsubscribes without draining, dropping requests already delivered. A node must drain
its command subscriptions first, so it keeps its own subscriptions and answers the
discovery subjects here, with nats-py's own response types for the wire format.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.micro.service import EndpointInfo, EndpointStats, ServiceInfo, ServicePing, ServiceStats

from radix.wire.names import micro_subjects

__all__ = ["MicroResponder"]

SERVICE_NAME = "radix"


class MicroResponder:
    """Answers the micro discovery and stats requests of one node."""

    def __init__(
        self,
        nc: NATS,
        *,
        node_id: str,
        version: str,
        metadata: dict[str, str],
        endpoints: Callable[[], list[EndpointInfo]],
        stats: Callable[[], list[EndpointStats]],
    ) -> None:
        self._nc = nc
        self._id = node_id
        self._version = version
        self._metadata = metadata
        self._endpoints = endpoints
        self._stats = stats
        self._started = datetime.now(UTC)
        self._subs: list[Subscription] = []

    async def start(self) -> None:
        for subject in micro_subjects(SERVICE_NAME, self._id):
            self._subs.append(await self._nc.subscribe(subject, cb=self._answer))

    async def stop(self) -> None:
        """Stop answering. Safe to call twice."""
        subs, self._subs = self._subs, []
        for sub in subs:
            if not self._nc.is_closed:
                await sub.unsubscribe()

    async def _answer(self, msg: Msg) -> None:
        verb = msg.subject.split(".")[1]
        body: dict[str, object]
        if verb == "PING":
            body = ServicePing(id=self._id, name=SERVICE_NAME, version=self._version, metadata=self._metadata).to_dict()
        elif verb == "INFO":
            body = ServiceInfo(
                name=SERVICE_NAME,
                id=self._id,
                version=self._version,
                metadata=self._metadata,
                description="Radix node: event-sourced aggregates on NATS JetStream",
                endpoints=self._endpoints(),
            ).to_dict()
        else:
            body = ServiceStats(
                name=SERVICE_NAME,
                id=self._id,
                version=self._version,
                metadata=self._metadata,
                started=self._started,
                endpoints=self._stats(),
            ).to_dict()
        if msg.reply:
            await self._nc.publish(msg.reply, json.dumps(body).encode())
