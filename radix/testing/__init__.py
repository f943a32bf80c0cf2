"""For testing code built on Radix, yours and Radix's own (docs/testing.md).

- `scenario`: given events, when a command, then events, a rejection or a conflict: one aggregate
  type through the real command algorithm, synchronously;
- `InMemoryRuntime`: whole contexts through the real actors, on in-memory twins of every port;
- `capture_logs`: what Radix logs, as structured records;
- `eventually`: wait on a condition with a time-out rather than sleeping;
- `record`, `react`, `project`: reaction and projection handlers called as Radix calls them;
- `NodeProcess`, `TcpProxy`, `lease_owners`, `open_inboxes`: real nodes in child processes, links to
  cut, and what a test of a cluster asks of it.
"""

from radix.testing.conditions import eventually
from radix.testing.logs import capture_logs
from radix.testing.processes import NodeProcess, lease_owners, open_inboxes
from radix.testing.processing import project, react, record
from radix.testing.proxy import TcpProxy
from radix.testing.runtime import InMemoryRuntime
from radix.testing.scenario import Outcome, Scenario, ScenarioError, scenario

__all__ = [
    "InMemoryRuntime",
    "NodeProcess",
    "Outcome",
    "Scenario",
    "ScenarioError",
    "TcpProxy",
    "capture_logs",
    "eventually",
    "lease_owners",
    "open_inboxes",
    "project",
    "react",
    "record",
    "scenario",
]
