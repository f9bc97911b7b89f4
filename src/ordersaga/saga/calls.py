"""One step call: retried under one idempotency key, settled by a status probe if need be.

A call ends in one of three ways (:class:`CallStatus`): the service applied it, the service
refused it (a definite answer: never retried, never compensated), or its outcome stayed unknown
after the retry budget and the probe (the caller compensates it to be safe; a tombstone in the
service stops a late arrival).
"""

from __future__ import annotations

import enum
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ordersaga.errors import TransportError
from ordersaga.protocol.messages import Command, KeyState, Probe, Reply, ReplyStatus
from ordersaga.saga.breaker import Breakers
from ordersaga.saga.clock import Clock
from ordersaga.saga.crash import CrashPoints
from ordersaga.saga.retry import RetryPolicy
from ordersaga.transport.base import Transport


class CallStatus(enum.StrEnum):
    SUCCEEDED = "succeeded"
    REFUSED = "refused"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class CallOutcome:
    status: CallStatus
    body: Mapping[str, Any] = field(default_factory=dict)
    reason: str | None = None
    attempts: int = 1
    probed: bool = False


@dataclass(slots=True)
class CallStats:
    calls: int = 0
    attempts: int = 0
    probes: int = 0
    unknown: int = 0

    @property
    def retries(self) -> int:
        return self.attempts - self.calls


def _from_reply(command: Command, reply: Reply, attempts: int, probed: bool) -> CallOutcome:
    if reply.status is ReplyStatus.OK:
        return CallOutcome(CallStatus.SUCCEEDED, dict(reply.body), None, attempts, probed)
    reason = f"{command.service} {command.action}: {reply.reason or reply.status.value}"
    return CallOutcome(CallStatus.REFUSED, dict(reply.body), reason, attempts, probed)


class Caller:
    """Makes step calls through a transport with retries, breakers and probes."""

    def __init__(
        self,
        transport: Transport,
        breakers: Breakers,
        clock: Clock,
        rng: random.Random,
        crash: CrashPoints,
        probe_policy: RetryPolicy,
    ) -> None:
        self._transport = transport
        self._breakers = breakers
        self._clock = clock
        self._rng = rng
        self._crash = crash
        self._probe_policy = probe_policy
        self.stats = CallStats()

    async def call(
        self,
        command: Command,
        policy: RetryPolicy,
        point: str,
        on_slow: Callable[[], Awaitable[None]] | None = None,
        slow_after: float = float("inf"),
    ) -> CallOutcome:
        """Send ``command`` until a definite answer, the budget is spent, or forever.

        ``point`` names the crash points around each attempt. ``on_slow`` runs once when the
        call has been failing for ``slow_after`` seconds (to flag a saga for attention).
        """
        self.stats.calls += 1
        breaker = self._breakers[command.service]
        started = self._clock.monotonic()
        attempts = 0
        flagged = False
        last_error = "no attempt"
        while True:
            await breaker.acquire()
            attempts += 1
            self.stats.attempts += 1
            self._crash.hit(f"call.before:{point}")
            try:
                reply = await self._transport.send(command)
            except TransportError as exc:
                breaker.record_failure()
                last_error = str(exc)
            except BaseException:
                breaker.release()
                raise
            else:
                breaker.record_success()
                self._crash.hit(f"call.after:{point}")
                if reply.status.definite:
                    return _from_reply(command, reply, attempts, probed=False)
                last_error = f"{command.service}: key still in flight"
            elapsed = self._clock.monotonic() - started
            if not policy.may_retry(attempts, elapsed):
                break
            if on_slow is not None and not flagged and elapsed >= slow_after:
                flagged = True
                await on_slow()
            await self._clock.sleep(policy.backoff(attempts, self._rng))
        return await self._settle(command, attempts, last_error)

    async def _settle(self, command: Command, attempts: int, last_error: str) -> CallOutcome:
        """The retry budget is spent: ask the service what became of the key."""
        probe = await self.probe(command.service, command.key)
        if probe is not None and probe.reply is not None and probe.state is not KeyState.UNKNOWN:
            return _from_reply(command, probe.reply, attempts, probed=True)
        if probe is not None and probe.state is KeyState.REFUSED:
            reason = f"{command.service} {command.action}: refused (found by probe)"
            return CallOutcome(CallStatus.REFUSED, {}, reason, attempts, True)
        self.stats.unknown += 1
        reason = (
            f"{command.service} {command.action}: outcome unknown after {attempts} attempts"
            f" ({last_error})"
        )
        return CallOutcome(CallStatus.UNKNOWN, {}, reason, attempts, True)

    async def probe(self, service: str, key: str) -> Probe | None:
        """The service's answer for ``key``, or None if the probe itself got no answer."""
        breaker = self._breakers[service]
        started = self._clock.monotonic()
        attempts = 0
        while True:
            await breaker.acquire()
            attempts += 1
            self.stats.probes += 1
            try:
                probe = await self._transport.probe(service, key)
            except TransportError:
                breaker.record_failure()
            except BaseException:
                breaker.release()
                raise
            else:
                breaker.record_success()
                return probe
            if not self._probe_policy.may_retry(attempts, self._clock.monotonic() - started):
                return None
            await self._clock.sleep(self._probe_policy.backoff(attempts, self._rng))
