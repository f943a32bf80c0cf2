"""A Jepsen-style fault suite: a real three-server NATS cluster, Radix nodes, faults on a seeded schedule,
a recorded history and a checker of named invariants (docs/chaos.md).

    radix chaos --seed 7            # one run, replayable
    radix chaos --soak 3600         # random seeds for an hour, a folder per run
"""

from radix.chaos.checker import INVARIANTS, Result, check, summary
from radix.chaos.faults import KINDS, Fault, schedule
from radix.chaos.harness import ChaosServers, ChaosSpec, chaos_servers, run_chaos
from radix.chaos.history import History, read_history, write_history
from radix.chaos.mutations import MUTATIONS

__all__ = [
    "INVARIANTS",
    "KINDS",
    "MUTATIONS",
    "ChaosServers",
    "ChaosSpec",
    "Fault",
    "History",
    "Result",
    "chaos_servers",
    "check",
    "read_history",
    "run_chaos",
    "schedule",
    "summary",
    "write_history",
]
