"""One clock for everything that reads time or sleeps, injected so that tests never wait.

The engine (executor, driver, calls, breakers), the saga stores (timestamps), the participant kit
(timestamps, backoff between optimistic-locking retries), the cluster worker (lease renewal and
its deadline, the grace period) and the fault injector (delays, late deliveries) each take a
:class:`Clock`, :class:`SystemClock` by default. :class:`FakeClock` (also exported by
:mod:`ordersaga.saga.testing`) makes every sleep return at once, having moved its time on: one
fake drives a whole test, and a test of backoff or of a lease's expiry asserts what happened,
never how long it took.

It sits at the bottom of the layers (beside :mod:`ordersaga.errors`), so that the engine and the
participant kit, which never import each other, share it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

__all__ = ["Clock", "FakeClock", "SystemClock"]


class Clock(Protocol):
    """Everything that reads time or sleeps takes one of these, so one fake drives a test."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for intervals and deadlines)."""
        ...

    def time(self) -> float:
        """Wall-clock seconds since the epoch (for timestamps in the log)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (a fake returns at once, its time moved on)."""
        ...


class SystemClock:
    """The real clock.

    Its readings are the ``time`` module's own functions (a builtin is no descriptor: read
    through an instance it stays unbound), not methods that call them: the engine reads the
    clock dozens of times per order, and a method adds a Python frame to each reading.
    """

    monotonic = staticmethod(time.monotonic)
    time = staticmethod(time.time)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class FakeClock:
    """A clock for tests: ``sleep`` advances time at once and records the requested delays."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)  # still let other coroutines run, as a real sleep would
