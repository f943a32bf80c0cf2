"""What a node shows of itself: NATS micro discovery and stats, and the Prometheus endpoint.

Both read the node's counters (`radix.observability.metrics.Metrics`, the actors' `Stats`) when
asked, so nothing is counted twice.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from typing import Any

from nats.aio.client import Client as NATS
from nats.micro.service import EndpointInfo, EndpointStats
from prometheus_client import CollectorRegistry, start_http_server

from radix import wire
from radix.observability.logs import logger
from radix.observability.metrics import Metrics, PrometheusCollector
from radix.observability.micro import MicroResponder
from radix.runtime.config import MetricsConfig
from radix.runtime.hosting import Hosting
from radix.runtime.ports import Stats
from radix.wire.names import COMMANDS, context_filter, queue_group

__all__ = ["Telemetry", "radix_version"]


def radix_version() -> str:
    """The installed version of Radix."""
    try:
        return importlib.metadata.version("radix")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"


class Telemetry:
    """A node's micro responder and metrics endpoint."""

    def __init__(
        self,
        *,
        node_id: str,
        hosting: Hosting,
        metrics: Metrics,
        stats: Stats,
        live: Callable[[], int],
        processors: Callable[[], list[dict[str, Any]]] = list,
    ) -> None:
        self._node_id = node_id
        self._processors = processors
        self._hosting = hosting
        self._metrics = metrics
        self._stats = stats
        self._live = live
        self._micro: MicroResponder | None = None
        self._server: Any = None
        self._host = ""

    async def start_micro(self, nc: NATS) -> None:
        """Answer `$SRV.PING`, `$SRV.INFO` and `$SRV.STATS` for this node."""
        self._micro = MicroResponder(
            nc,
            node_id=self._node_id,
            version=radix_version(),
            metadata={"node": self._node_id},
            endpoints=self._endpoint_info,
            stats=self._endpoint_stats,
        )
        await self._micro.start()

    async def stop_micro(self) -> None:
        if self._micro is not None:
            await self._micro.stop()

    def serve_metrics(self, config: MetricsConfig) -> None:
        """Serve Prometheus metrics, if a port is configured."""
        if config.port is None:
            return
        registry = CollectorRegistry()
        registry.register(PrometheusCollector(self._metrics, self._node_id, self._gauges, self._processors))
        self._server, _ = start_http_server(config.port, addr=config.host, registry=registry)
        self._host = config.host
        logger.info("metrics served", url=self.metrics_url)

    def stop_metrics(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    @property
    def metrics_url(self) -> str | None:
        """Where Prometheus metrics are served, if they are."""
        if self._server is None:
            return None
        return f"http://{self._host}:{self._server.server_port}/metrics"

    def _endpoint_info(self) -> list[EndpointInfo]:
        return [
            EndpointInfo(
                name=f"{h.namespace}-{h.context.name}",
                subject=context_filter(h.namespace, h.context.name, COMMANDS),
                queue_group=queue_group(h.namespace, h.context.name),
                metadata={"namespace": h.namespace, "context": h.context.name},
            )
            for h in self._hosting
        ]

    def _endpoint_stats(self) -> list[EndpointStats]:
        stats = []
        for hosted in self._hosting:
            ns, ctx = hosted.namespace, hosted.context.name
            scope = self._metrics.scope(ns, ctx)
            answered = sum(scope.statuses.values())
            nanoseconds = int(scope.seconds * 1e9)
            stats.append(
                EndpointStats(
                    name=f"{ns}-{ctx}",
                    subject=context_filter(ns, ctx, COMMANDS),
                    queue_group=queue_group(ns, ctx),
                    num_requests=scope.received,
                    num_errors=scope.statuses[wire.ERROR],
                    last_error=scope.last_error,
                    processing_time=nanoseconds,
                    average_processing_time=nanoseconds // answered if answered else 0,
                    data=dict(scope.statuses),
                )
            )
        return stats

    def _gauges(self) -> dict[str, float]:
        stats = self._stats
        return {
            "live_actors": self._live(),
            "activations_total": stats.activations,
            "passivations_total": stats.passivations,
            "migrations_total": stats.migrations,
            "fenced_appends_total": stats.fenced,
            "snapshots_written_total": stats.snapshots_written,
        }
