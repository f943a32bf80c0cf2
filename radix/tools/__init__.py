"""Radix's tooling, on top of the runtime: `bench` (against raw JetStream), `chaos` (the fault suite),
`demo`, `workload` (load with a record of every command) and `responder` (the bench's hand-written
baseline). The CLI imports each only for the command that runs it; `catalog` names what they offer."""
