"""Process settings for a node: the garbage collector, tuned once the node runs."""

from __future__ import annotations

import gc

from radix.runtime import tune_gc
from radix.runtime.tuning import GC_THRESHOLD


def test_tune_gc_freezes_what_is_alive_and_collects_less_often() -> None:
    """What is alive is frozen out of the collector's sight, and young collections come every 50,000 allocations."""
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == (GC_THRESHOLD, 20, 100)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
