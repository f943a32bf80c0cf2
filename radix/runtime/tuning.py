"""Process settings for a long-running node."""

from __future__ import annotations

import gc

__all__ = ["tune_gc"]

#: Container allocations between young-generation collections (CPython's default is 700).
GC_THRESHOLD = 50_000


def tune_gc(threshold: int = GC_THRESHOLD) -> None:
    """Set this process's garbage collector for a node that has started: what is alive now (modules,
    the node's own structures) is moved out of the collector's sight (`gc.freeze`), and the
    collections run far less often.

    With CPython's defaults, the collections of older generations walk every live object: about
    a sixth of a busy node's CPU, and pauses of 15 to 30 ms that set its tail latency (measured
    with 1,000 live aggregates; see docs/benchmarks.md). Reference counting still frees almost
    everything at once; the collector is only for reference cycles, which a node makes few of.
    `radix node` calls this once it is running; call it yourself where a node runs in your process.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(threshold, 20, 100)
