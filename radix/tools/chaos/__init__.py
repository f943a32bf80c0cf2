"""A Jepsen-style fault suite: a real three-server NATS cluster, Radix nodes, faults on a seeded schedule,
a recorded history and a checker of named invariants (docs/chaos.md).

    radix chaos --seed 7            # one run, replayable
    radix chaos --soak 3600         # random seeds for an hour, a folder per run

`faults` (the fault kinds and their schedule), `history` (what a run records), `checker` (the
invariants), `harness` (the run), `soak` and `mutations` (deliberate bugs; `radix.cli.mutant` runs a
node built with one). Nothing is imported here, so that naming a fault kind loads no harness.
"""
