"""A seeded fault injector that wraps any transport.

For each call, each fault class strikes independently with probability ``rate``:

``request_lost``
    the request never reaches the service; the caller sees :class:`RequestLost`.
``response_lost``
    the service applies the request, the answer is lost; the caller sees :class:`ResponseLost`.
``duplicate``
    the request is delivered twice in a row (the caller gets the second answer).
``late``
    the request is delivered once more later, after the caller has moved on — possibly after the
    step was compensated, which is what tombstones are for.
``delay``
    the call takes longer (a short random pause before delivery).

Probes suffer request and response loss too. Every injected fault is counted in
:attr:`FaultInjector.counts`, so a test can prove each class fired. Randomness comes from one
seeded :class:`random.Random`; with a fixed seed and a serial workload the faults are reproducible.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from dataclasses import dataclass

from ordersaga.clock import Clock, SystemClock
from ordersaga.errors import AccessRefused, RequestLost, ResponseLost, TransportError
from ordersaga.protocol.messages import Command, Probe, Reply
from ordersaga.transport.base import Transport

FAULT_CLASSES = ("request_lost", "response_lost", "duplicate", "late", "delay")


@dataclass(frozen=True, slots=True)
class FaultSettings:
    """How often faults strike (``rate``, per class and call), from which seed, how late."""

    rate: float = 0.0
    seed: int | None = None
    max_delay: float = 0.002  # seconds, for the ``delay`` class
    max_late: float = 0.05  # seconds until a late delivery arrives

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError("fault rate must be within [0, 1]")


class FaultInjector(Transport):
    """Wraps any transport and makes its calls suffer the faults of the module docstring."""

    def __init__(
        self, inner: Transport, settings: FaultSettings, *, clock: Clock | None = None
    ) -> None:
        self._inner = inner
        self._settings = settings
        self._clock = clock or SystemClock()  # the delays and the late deliveries wait on it
        self._rng = random.Random(settings.seed)
        self.counts: Counter[str] = Counter({name: 0 for name in FAULT_CLASSES})
        self.late_refused = 0  # late deliveries the service refused
        self.late_tombstoned = 0  # ... because the step had been compensated (a tombstone)
        self.late_replayed = 0  # late deliveries answered ok (a stored reply replayed)
        #: Sends that raised because a request or its response was lost (once per send, even when
        #: both were): each costs its caller exactly one retry, which a benchmark checks.
        self.lost_sends = 0
        self._late: set[asyncio.Task[None]] = set()

    def _strikes(self, fault: str) -> bool:
        if self._settings.rate and self._rng.random() < self._settings.rate:
            self.counts[fault] += 1
            return True
        return False

    async def send(self, command: Command) -> Reply:
        # Draw every fault up front, in a fixed order, so a seed fixes the whole pattern.
        lost = self._strikes("request_lost")
        response_lost = self._strikes("response_lost")
        duplicate = self._strikes("duplicate")
        late = self._strikes("late")
        delay = self._strikes("delay")
        late_after = self._rng.uniform(0.0, self._settings.max_late)
        pause = self._rng.uniform(0.0, self._settings.max_delay)
        if late:
            self._schedule_late(command, late_after)
        if delay:
            await self._clock.sleep(pause)
        if lost:
            self.lost_sends += 1
            raise RequestLost(f"{command.service}: request lost (injected)")
        if duplicate:
            with contextlib.suppress(TransportError):
                await self._inner.send(command)
        reply = await self._inner.send(command)
        if response_lost:
            self.lost_sends += 1
            raise ResponseLost(f"{command.service}: response lost (injected)")
        return reply

    async def probe(self, service: str, key: str) -> Probe:
        if self._strikes("request_lost"):
            raise RequestLost(f"{service}: probe lost (injected)")
        probe = await self._inner.probe(service, key)
        if self._strikes("response_lost"):
            raise ResponseLost(f"{service}: probe response lost (injected)")
        return probe

    def _schedule_late(self, command: Command, after: float) -> None:
        task = asyncio.get_running_loop().create_task(self._deliver_late(command, after))
        self._late.add(task)
        task.add_done_callback(self._late.discard)

    async def _deliver_late(self, command: Command, after: float) -> None:
        await self._clock.sleep(after)
        try:
            reply = await self._inner.send(command)
        except (TransportError, AccessRefused):  # the call itself reports a refused token
            return
        if reply.ok:
            self.late_replayed += 1
        else:
            self.late_refused += 1
            if (reply.reason or "").endswith("cancelled"):
                self.late_tombstoned += 1

    @property
    def pending_late(self) -> int:
        return len(self._late)

    async def drain(self) -> None:
        """Deliver every late request still pending (the run waits for them before it ends)."""
        while self._late:
            await asyncio.gather(*list(self._late), return_exceptions=True)
        await self._inner.drain()

    async def close(self) -> None:
        await self.drain()
        await self._inner.close()
