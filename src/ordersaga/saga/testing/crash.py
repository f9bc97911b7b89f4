"""Crash points that raise instead of exiting, to test recovery inside one test process.

The engine's :class:`~ordersaga.saga.crash.CrashPoints` end the process with ``os._exit``, which
is what an end-to-end test wants. A unit test wants the same abrupt stop without losing the test
process: :class:`RaisingCrashPoints` raises :class:`SimulatedCrash` at the chosen hit instead.
The test then drops the engine (its memory is "lost"), builds a new one on the same store and
transport, and runs recovery — exactly what a restarted process does.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from ordersaga.saga.crash import CrashPoints

__all__ = ["RaisingCrashPoints", "SimulatedCrash"]


class SimulatedCrash(Exception):
    """The process "died" at a crash point (raised by :class:`RaisingCrashPoints`).

    Deliberately not an :class:`ordersaga.errors.OrderSagaError`: nothing in the engine catches
    it, so it unwinds the whole saga like a real crash cuts it short.
    """


@dataclass(slots=True)
class RaisingCrashPoints(CrashPoints):
    """Raise :class:`SimulatedCrash` at the ``count``-th hit of a point matching ``pattern``.

    ``names`` records every point passed, in order (``fired`` the one that crashed), so a test
    can report where it crashed.
    """

    names: list[str] | None = None
    fired: str | None = None

    def hit(self, name: str) -> None:
        """Count ``name`` if it matches; raise on the ``count``-th match (once)."""
        if self.names is not None:
            self.names.append(name)
        if self.fired is not None or self.pattern is None:
            return
        if not fnmatch.fnmatchcase(name, self.pattern):
            return
        self.hits += 1
        if self.hits >= self.count:
            self.fired = name
            raise SimulatedCrash(name)
