"""One retry loop's state (:class:`Attempts`) and the observers of its attempts.

The retry loop of :mod:`ordersaga.saga.calls` notifies :class:`Observer` objects around each
attempt: the counters of :class:`CallStats`, the crash points of tests, and the "needs
attention" flag of a call failing for long live here, not inside the loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ordersaga.clock import Clock
from ordersaga.errors import ServiceUnreachable, TransportError
from ordersaga.saga.crash import CrashPoints
from ordersaga.saga.trail import Trail

__all__ = ["Attempts", "CallStats", "Counting", "Crashing", "Flagging", "Observer"]


@dataclass(slots=True)
class CallStats:
    calls: int = 0
    attempts: int = 0
    probes: int = 0
    unknown: int = 0
    unreachable: int = 0  # attempts that found the service unreachable (no budget spent)
    expired: int = 0  # calls ended by an order's deadline

    @property
    def retries(self) -> int:
        return self.attempts - self.calls


@dataclass(slots=True)
class Attempts:
    """The state of one retry loop, as observers see it."""

    service: str
    started: float  # monotonic
    attempts: int = 0  # every attempt
    delivered: int = 0  # attempts that may have reached the service: the budget
    outage: float = 0.0  # seconds spent while the service was unreachable (not budget)
    unreachable_since: float | None = None  # wall clock, while the service is unreachable
    last_error: str = "no attempt"
    keep: bool = False  # keep a trail of the attempts (a step call's; a probe's are not)
    trail: Trail | None = None  # made at the first attempt worth keeping (see kept)

    def kept(self, clock: Clock) -> Trail | None:
        """The trail to add an attempt to (None: not kept); a plain call never makes one."""
        if self.trail is None and self.keep:
            self.trail = Trail(clock)
        return self.trail


class Observer:
    """Hooks of the retry loop; each is a no-op unless overridden."""

    def attempting(self, state: Attempts) -> None:
        """An attempt is about to be sent."""

    def answered(self, state: Attempts) -> None:
        """An attempt got an answer back (definite or not)."""

    def failed(self, state: Attempts, error: TransportError) -> None:
        """An attempt ended without an answer."""

    async def waiting(self, state: Attempts, elapsed: float) -> None:
        """The loop is about to wait before the next attempt (``elapsed`` s since its start)."""


class Counting(Observer):
    def __init__(self, stats: CallStats, *, probes: bool) -> None:
        self._stats = stats
        self._probes = probes

    def attempting(self, state: Attempts) -> None:
        if self._probes:
            self._stats.probes += 1
        else:
            self._stats.attempts += 1

    def failed(self, state: Attempts, error: TransportError) -> None:
        if isinstance(error, ServiceUnreachable):
            self._stats.unreachable += 1


class Crashing(Observer):
    """The crash points around each attempt of a step call (``call.before:``/``call.after:``)."""

    def __init__(self, crash: CrashPoints, point: str) -> None:
        self._crash = crash
        self._point = point

    def attempting(self, state: Attempts) -> None:
        self._crash.hit(f"call.before:{self._point}")

    def answered(self, state: Attempts) -> None:
        self._crash.hit(f"call.after:{self._point}")


class Flagging(Observer):
    """Calls ``on_slow`` once when the call has been failing for ``after`` seconds."""

    def __init__(self, on_slow: Callable[[str], Awaitable[None]], after: float) -> None:
        self._on_slow = on_slow
        self._after = after
        self._flagged = False

    async def waiting(self, state: Attempts, elapsed: float) -> None:
        if not self._flagged and elapsed >= self._after:
            self._flagged = True
            how = f"still failing after {state.attempts} attempts in {elapsed:.0f} s"
            await self._on_slow(f"{how} ({state.last_error})")
