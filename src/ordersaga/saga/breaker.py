"""A per-service circuit breaker, shared by all sagas.

After ``threshold`` consecutive transport failures the breaker opens: for ``cooldown`` seconds no
call is attempted, and callers *wait* (they do not spend retry attempts). Then one trial call is
let through (half-open); its success closes the breaker, its failure opens it again. A dead
service thus costs one probe call per cooldown instead of a retry storm from every saga.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from dataclasses import dataclass

from ordersaga.clock import Clock


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


#: Read once: an enum member read through its class is slow on Python 3.11 (see ``_ACTION`` in
#: :mod:`.driver`), and every step call's success reads it.
_CLOSED = BreakerState.CLOSED


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    threshold: int = 12
    cooldown: float = 0.25


#: Told when a breaker opens or closes again: (service, new state).
BreakerListener = Callable[[str, "BreakerState"], None]


class CircuitBreaker:
    def __init__(self, name: str, clock: Clock, settings: BreakerSettings | None = None) -> None:
        self.name = name
        self._clock = clock
        self._settings = settings or BreakerSettings()
        self.state = BreakerState.CLOSED
        self.failures = 0  # in a row, since the last success
        self._opened_at = 0.0
        self._trial_running = False
        self._changed = asyncio.Event()
        self.opened = 0  # how many times it opened (for reports and tests)
        self.waits = 0  # how many times a caller waited instead of calling
        self.listener: BreakerListener | None = None  # told when it opens or closes

    async def acquire(self, until: float | None = None) -> bool:
        """Wait until a call may be attempted; False if ``until`` (monotonic) passed first.

        Waiting callers wake up at least once per trial call or cooldown, so ``until`` is
        honoured within a trial call's duration.
        """
        while True:
            if self.state is BreakerState.CLOSED:
                return True
            if until is not None and self._clock.monotonic() >= until:
                return False
            if self.state is BreakerState.OPEN:
                remaining = self._opened_at + self._settings.cooldown - self._clock.monotonic()
                if remaining > 0:
                    self.waits += 1
                    await self._clock.sleep(remaining)
                    continue
                self.state = BreakerState.HALF_OPEN
            if not self._trial_running:
                self._trial_running = True
                return True
            self.waits += 1
            self._changed.clear()
            await self._changed.wait()

    def record_success(self) -> None:
        self.failures = 0
        if self.state is not _CLOSED:
            self.state = _CLOSED
            self._release_trial()
            if self.listener is not None:
                self.listener(self.name, self.state)

    def record_failure(self) -> None:
        self.failures += 1
        if self.state is BreakerState.HALF_OPEN or self.failures >= self._settings.threshold:
            was_open = self.state is BreakerState.OPEN
            if not was_open:
                self.opened += 1
            self.state = BreakerState.OPEN
            self._opened_at = self._clock.monotonic()
            self._release_trial()
            if not was_open and self.listener is not None:
                self.listener(self.name, self.state)

    def release(self) -> None:
        """Give back a trial slot without a verdict (the trial call was cancelled)."""
        if self._trial_running:
            self._release_trial()

    def _release_trial(self) -> None:
        self._trial_running = False
        self._changed.set()


class Breakers(dict[str, CircuitBreaker]):
    """One breaker per service name, created on first use (``breakers[service]``).

    A dict of the breakers made so far: looking up one made already (every step call) is the
    dict's own lookup, with no Python method call; :meth:`__missing__` makes a new one.
    """

    def __init__(self, clock: Clock, settings: BreakerSettings | None = None) -> None:
        super().__init__()
        self._clock = clock
        self._settings = settings
        self._listener: BreakerListener | None = None

    def listen(self, listener: BreakerListener) -> None:
        """Tell ``listener`` whenever a breaker (an existing or a future one) opens or closes."""
        self._listener = listener
        for breaker in self.values():
            breaker.listener = listener

    def __missing__(self, service: str) -> CircuitBreaker:
        breaker = CircuitBreaker(service, self._clock, self._settings)
        breaker.listener = self._listener
        self[service] = breaker
        return breaker

    def all(self) -> list[CircuitBreaker]:
        return list(self.values())
