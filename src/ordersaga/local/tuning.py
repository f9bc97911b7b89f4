"""Process-wide tuning for a long run, applied once at the command-line edge.

A run allocates and frees short-lived objects (commands, replies, records, futures) at a high rate.
With CPython's default thresholds the cyclic garbage collector starts a young-generation pass every
700 net allocations and, every so often, a full pass over every object the process holds — the
modules, the world, the open databases — which costs more than a tenth of a run's CPU time. Almost
none of those objects are in reference cycles: reference counting frees them.

:func:`tune_gc` moves the objects that exist once the process has started into the permanent
generation (:func:`gc.freeze`: they live until the process ends anyway) and lets the young
generation grow to ``young`` objects before a pass. Cycles are still collected, so memory stays
bounded; they are just found in fewer, larger passes.
"""

from __future__ import annotations

import gc

__all__ = ["tune_gc"]

_tuned = False


def tune_gc(young: int = 20_000) -> None:
    """Tune the collector for a long run (see the module docstring); only the first call acts."""
    global _tuned
    if _tuned:
        return
    _tuned = True
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young, middle, old)
