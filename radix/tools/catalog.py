"""What the tools offer by name, importable without the tools themselves (the CLI's parser lists them):
the bench's scenarios, the fault suite's fault kinds and its deliberate bugs."""

from __future__ import annotations

from typing import Final

from radix.tools.chaos.faults import KINDS

__all__ = ["KINDS", "MUTATIONS", "SCENARIOS"]

#: `radix bench --only`: the scenarios, in the order they run (radix.tools.bench).
SCENARIOS: Final = ("many", "hot", "activation", "failover", "placement", "density", "reaction", "projection")

#: `radix chaos --mutation`: a test build of `radix node` with one guarantee broken on purpose
#: (radix.tools.chaos.mutations), each caught by the fault suite's matching invariant. Never in production.
MUTATIONS: Final = {
    "skip-fence": "appends are sent unconditionally: without Nats-Expected-Last-Subject-Sequence (nor "
    "Nats-Msg-Id, whose deduplication would hide some of the late writes)",
    "ack-before-publish": "a commit is acknowledged first and written a moment later",
    "ignore-lease-loss": "a node that lost its liveness or lease goes on serving its aggregates",
    "apply-twice": "command ids are forgotten, so a command sent again is applied again",
}
