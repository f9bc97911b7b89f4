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

:func:`run_loop` runs a command on uvloop's event loop: it schedules callbacks, futures and tasks
in C, where asyncio's own loop runs Python for each (a saga's step calls wake several tasks and
futures each). The semantics the engine relies on are the same: callbacks run in the order they
were scheduled, and a new task's first step runs on the loop's next iteration (group commit).
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

__all__ = ["run_loop", "tune_gc"]

T = TypeVar("T")

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


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to its end on a new uvloop event loop, as :func:`asyncio.run` would."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
