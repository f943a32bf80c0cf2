"""What a node counts, and how it is exposed: NATS micro stats and a Prometheus endpoint.

The node records every command's outcome and latency here; the Prometheus collector
and the `$SRV.STATS` responder read these numbers when asked, so nothing is counted
twice.
"""

from __future__ import annotations

import bisect
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["LATENCY_BUCKETS", "Metrics", "PrometheusCollector"]

#: Histogram buckets of command latency, in seconds.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass
class _Scope:
    """Counts of one (namespace, context)."""

    statuses: Counter[str] = field(default_factory=Counter)
    received: int = 0
    seconds: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    last_error: str = ""


class Metrics:
    """Counters of one node, per (namespace, context)."""

    def __init__(self) -> None:
        self.scopes: dict[tuple[str, str], _Scope] = {}
        self.started = time.time()
        self._window: list[tuple[float, int]] = []

    def scope(self, namespace: str, context: str) -> _Scope:
        found = self.scopes.get((namespace, context))
        if found is None:
            found = self.scopes[(namespace, context)] = _Scope()
        return found

    def received(self, namespace: str, context: str) -> None:
        self.scope(namespace, context).received += 1

    def answered(self, namespace: str, context: str, status: str, seconds: float | None, reason: str | None) -> None:
        scope = self.scope(namespace, context)
        scope.statuses[status] += 1
        if status == "error" and reason:
            scope.last_error = reason
        if seconds is not None:
            scope.seconds += seconds
            scope.buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1

    def total(self) -> int:
        return sum(sum(s.statuses.values()) for s in self.scopes.values())

    def rate(self) -> float:
        """Commands answered per second over roughly the last ten seconds."""
        now, total = time.monotonic(), self.total()
        self._window.append((now, total))
        while len(self._window) > 2 and now - self._window[0][0] > 10:
            self._window.pop(0)
        first_time, first_total = self._window[0]
        return (total - first_total) / (now - first_time) if now > first_time else 0.0


class PrometheusCollector(Collector):
    """Exposes a node's metrics to a Prometheus registry, read at scrape time."""

    def __init__(
        self,
        metrics: Metrics,
        node: str,
        gauges: Callable[[], dict[str, float]],
        processors: Callable[[], list[dict[str, Any]]] = list,
    ) -> None:
        self._metrics = metrics
        self._node = node
        self._gauges = gauges
        self._processors = processors

    def collect(self) -> Iterator[Metric]:
        labels = ["node", "namespace", "context"]
        commands = CounterMetricFamily("radix_commands", "Commands answered, by status", labels=[*labels, "status"])
        latency = HistogramMetricFamily("radix_command_seconds", "Time from receipt to reply", labels=labels)
        for (namespace, context), scope in sorted(self._metrics.scopes.items()):
            for status in ("accepted", "rejected", "conflict", "error"):
                commands.add_metric([self._node, namespace, context, status], scope.statuses[status])
            cumulative, buckets = 0, []
            for bound, count in zip((*LATENCY_BUCKETS, float("inf")), scope.buckets, strict=True):
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
            latency.add_metric([self._node, namespace, context], buckets, scope.seconds)
        yield commands
        yield latency
        for name, value in self._gauges().items():
            kind = CounterMetricFamily if name.endswith("_total") else GaugeMetricFamily
            family = kind(f"radix_{name.removesuffix('_total')}", name.replace("_", " "), labels=["node"])
            family.add_metric([self._node], value)
            yield family
        yield from self._processor_metrics()

    def _processor_metrics(self) -> Iterator[Metric]:
        """Each reaction and projection partition this node owns: its lag, what it handled, what it parked."""
        labels = ["node", "namespace", "context", "name", "kind", "partition"]
        lag = GaugeMetricFamily("radix_processor_lag", "Feed messages not yet handled by a partition", labels=labels)
        handled = CounterMetricFamily("radix_processor_handled", "Events handled by a partition", labels=labels)
        parked = GaugeMetricFamily("radix_processor_parked", "Events a partition parked", labels=labels)
        for row in self._processors():
            values = [self._node, row["namespace"], row["context"], row["name"], row["kind"], str(row["partition"])]
            lag.add_metric(values, row["lag"])
            handled.add_metric(values, row["handled"])
            parked.add_metric(values, row["parked"])
        yield from (lag, handled, parked)
