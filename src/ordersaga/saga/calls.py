"""One step call: retried under one idempotency key, settled by a status probe if need be.

A call ends in one of four ways (:class:`CallStatus`): the service applied it; the service
refused it (a definite answer: never retried, never compensated); its outcome stayed unknown
after the retry budget and the probe (the caller compensates it to be safe; a tombstone in the
service stops a late arrival); or — only past the order's deadline — it was never delivered
because the service stayed unreachable (nothing to undo).

**An outage is not a refusal.** A :class:`~ordersaga.errors.ServiceUnreachable` attempt (no
connection could be opened: refused, DNS failure, connect timeout) certainly did not reach the
service. It is retried without spending the unknown-outcome budget (neither an attempt nor time
of the policy's deadline), and the service's breaker holds every saga waiting instead of
calling; only the order's ``deadline`` (see :class:`~ordersaga.saga.executor.EngineSettings`)
ends the wait. Past it, an action whose attempts were all undelivered — and which no earlier
process can have sent (``fresh``) — is ``undelivered``; otherwise its outcome is ``unknown``.

**Message age.** A command is stamped with the time of its first send (``sent_at``) and every
retry carries that stamp, so a service can refuse deliveries older than the message-age limit
(see :mod:`ordersaga.protocol.messages`). The caller never sends one older than the limit
(checked as each attempt is sent): an action's retries stop there and the call is settled by
the probe, as when the budget is spent; a compensation or confirmation (which must finish) is
stamped anew. That is safe because a saga still running keeps every record in every service
(retention only prunes finished sagas), and those phases are idempotent on the resource's state
anyway. An ``expired`` answer applied nothing but says nothing of earlier deliveries: it is not
definite, and is retried like a lost response.

**The trail.** Every attempt of a step call (when it was sent, how long it took, what came of
it) and every probe of its key (when, what it found) is kept in the call's outcome, in memory
(see :mod:`.trail`): the step record it becomes carries it into the log in a write made anyway.

There is one retry loop (:meth:`Caller._retry`) for actions and probes alike. What happens
around its attempts — counters, crash points, the "needs attention" flag of a call failing for
long — is done by :class:`Observer` objects it notifies (:mod:`.attempts`), not by code inside
the loop. Nearly every call is one attempt, answered: :meth:`Caller.call` sends that first
attempt itself when nothing can intervene (the breaker closed, no crash point armed, the message
young) and a definite answer ends the call there; anything else goes on in the loop as the
loop's own first attempt would (``first``), counted, trailed and observed the same.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ordersaga.clock import Clock
from ordersaga.errors import ServiceUnreachable, TransportError
from ordersaga.protocol.messages import (
    Command,
    KeyState,
    Phase,
    Probe,
    Reply,
    ReplyStatus,
    parse_key,
)
from ordersaga.saga.attempts import Attempts, CallStats, Counting, Crashing, Flagging, Observer
from ordersaga.saga.breaker import Breakers, BreakerState
from ordersaga.saga.callresult import DEADLINE_MARK, CallOutcome, CallStatus, outcome_of
from ordersaga.saga.crash import CrashPoints
from ordersaga.saga.retry import RetryPolicy
from ordersaga.saga.store.base import Attempt
from ordersaga.transport.base import Transport

__all__ = ["DEADLINE_MARK", "CallOutcome", "CallStatus", "Caller"]

#: Read once (every call's first attempt tests it): an enum member read through its class is
#: slow on Python 3.11 (see ``_ACTION`` in :mod:`.driver`).
_CLOSED = BreakerState.CLOSED

T = TypeVar("T")
A = TypeVar("A")


@dataclass(slots=True)
class _Stamped:
    """The command a call sends (a compensation's may be stamped anew between attempts)."""

    command: Command


class _AgeReached(Exception):
    """An action's next attempt would be older than the message-age limit: settle it instead."""


@dataclass(frozen=True, slots=True)
class _Exhausted:
    """The loop ended without a definite answer: the budget is spent, or the deadline passed."""

    expired: bool


def _from_reply(command: Command, reply: Reply, state: Attempts, probed: bool) -> CallOutcome:
    return outcome_of(command, reply, state.attempts, probed, _trail(state))


def _trail(state: Attempts) -> tuple[Attempt, ...]:
    return () if state.trail is None else state.trail.done()


def _since(wall: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(wall))


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
        max_message_age: float | None = None,
    ) -> None:
        self._transport = transport
        self._max_age = max_message_age
        self._breakers = breakers
        self._clock = clock
        self._rng = rng
        self._crash = crash
        self._armed = crash.armed  # read once: whether the crash points can do anything
        self._probe_policy = probe_policy
        self.stats = CallStats()
        self._count_attempts = Counting(self.stats, probes=False)
        self._count_probes = Counting(self.stats, probes=True)
        self._attempt_observers: tuple[Observer, ...] = (self._count_attempts,)
        #: The tasks whose call waits for an unreachable service (its breaker is open, or its
        #: last attempt could not connect), with that service: the sagas this process cannot
        #: progress now (a worker lets their leases lapse, for a worker that reaches it).
        self.stalled: dict[asyncio.Task[Any], str] = {}

    async def call(
        self,
        command: Command,
        policy: RetryPolicy,
        point: str,
        on_slow: Callable[[str], Awaitable[None]] | None = None,
        slow_after: float = float("inf"),
        *,
        deadline: float | None = None,
        fresh: bool = False,
    ) -> CallOutcome:
        """Send ``command`` until a definite answer, the budget is spent, or forever.

        ``point`` names the crash points around each attempt. ``on_slow`` runs once when the
        call has been failing for ``slow_after`` seconds (to flag a saga for attention), with
        how it fails (attempts, time, the last error).
        ``deadline`` (monotonic) ends the wait for an unreachable service (the order's
        deadline); ``fresh`` says no earlier process can have sent this key.
        """
        stats = self.stats
        stats.calls += 1
        clock, limit = self._clock, self._max_age
        sent_at = command.sent_at
        if sent_at is None:
            sent_at = clock.time()
            command = dataclasses.replace(command, sent_at=sent_at)
        started = clock.monotonic()
        breaker = self._breakers[command.service]
        first: Reply | TransportError | None = None
        if (
            breaker.state is _CLOSED
            and not self._armed
            and (limit is None or clock.time() - sent_at <= limit)
        ):
            # The first attempt of nearly every call: sent at once and answered. It is the
            # loop's first iteration without the loop (no breaker wait, no crash point, no age
            # to renew): a definite answer ends the call here; anything else goes on in the
            # loop as its first attempt (see _retry's ``first``).
            stats.attempts += 1  # what Counting does for an attempt
            try:
                reply = await self._transport.send(command)
            except TransportError as exc:
                first = exc
            except BaseException:
                breaker.release()
                raise
            else:
                if reply.status not in _INDEFINITE:  # (.definite: a property call)
                    breaker.record_success()
                    return outcome_of(command, reply)
                first = reply
        return await self._call(
            command, policy, point, on_slow, slow_after, deadline, fresh, started, first
        )

    async def _call(
        self,
        command: Command,
        policy: RetryPolicy,
        point: str,
        on_slow: Callable[[str], Awaitable[None]] | None,
        slow_after: float,
        deadline: float | None,
        fresh: bool,
        started: float,
        first: Reply | TransportError | None,
    ) -> CallOutcome:
        """The call through the retry loop (its first attempt already made if ``first``)."""
        observers = self._attempt_observers
        if self._armed:  # (tests) a disarmed one costs nothing per attempt
            observers += (Crashing(self._crash, point),)
        if on_slow is not None:
            observers += (Flagging(on_slow, slow_after),)
        stamped = _Stamped(command)
        transport, clock, limit = self._transport, self._clock, self._max_age
        state = Attempts(command.service, started, keep=True)

        def send(stamped: _Stamped) -> Awaitable[Reply]:
            # Not a coroutine: the attempt's coroutine is the transport's own (no extra frame).
            command = stamped.command
            if limit is not None and command.sent_at is not None:
                now = clock.time()
                if now - command.sent_at > limit:
                    if parse_key(command.key)[2] is Phase.ACTION:
                        state.last_error = f"{command.service}: the message-age limit was reached"
                        raise _AgeReached
                    stamped.command = command = dataclasses.replace(command, sent_at=now)
            return transport.send(command)

        if first is not None:
            state.attempts = 1
        try:
            result = await self._retry(
                state, send, stamped, _definite, policy, observers, deadline, first
            )
        except _AgeReached:
            return await self._settle(command, state, deadline)
        if isinstance(result, Reply):
            return _from_reply(command, result, state, probed=False)
        if result.expired:
            return self._expired(command, state, fresh and state.delivered == 0)
        return await self._settle(command, state, deadline)

    async def _settle(
        self, command: Command, state: Attempts, deadline: float | None
    ) -> CallOutcome:
        """The retry budget is spent: ask the service what became of the key."""
        asked = self._clock.monotonic()
        probe = await self.probe(command.service, command.key, deadline=deadline)
        if (kept := state.kept(self._clock)) is not None:
            found = "no answer" if probe is None else probe.state.value
            kept.probed(asked, self._clock.monotonic(), found)
        attempts, trail = state.attempts, _trail(state)
        if probe is not None and probe.reply is not None and probe.state is not KeyState.UNKNOWN:
            return _from_reply(command, probe.reply, state, probed=True)
        if probe is not None and probe.state is KeyState.REFUSED:
            reason = f"{command.service} {command.action}: refused (found by probe)"
            return CallOutcome(CallStatus.REFUSED, {}, reason, attempts, True, False, trail)
        self.stats.unknown += 1
        reason = (
            f"{command.service} {command.action}: outcome unknown after {attempts} attempts"
            f" ({state.last_error})"
        )
        return CallOutcome(CallStatus.UNKNOWN, {}, reason, attempts, True, False, trail)

    def _expired(self, command: Command, state: Attempts, undelivered: bool) -> CallOutcome:
        self.stats.expired += 1
        since = state.unreachable_since
        if since is not None:
            what = f"unreachable since {_since(since)}"
        else:
            began = self._clock.time() - (self._clock.monotonic() - state.started)
            what = f"without an answer since {_since(began)}"
        reason = (
            f"{command.service} {command.action}: {command.service} service {what}"
            f" ({state.last_error}); {DEADLINE_MARK}"
        )
        status = CallStatus.UNDELIVERED if undelivered else CallStatus.UNKNOWN
        return CallOutcome(status, {}, reason, state.attempts, False, True, _trail(state))

    async def probe(self, service: str, key: str, *, deadline: float | None = None) -> Probe | None:
        """The service's answer for ``key``, or None if the probe itself got no answer."""

        def send(key: str) -> Awaitable[Probe]:
            return self._transport.probe(service, key)

        state = Attempts(service, self._clock.monotonic())
        result = await self._retry(
            state, send, key, _any, self._probe_policy, (self._count_probes,), deadline
        )
        return None if isinstance(result, _Exhausted) else result

    async def _retry(
        self,
        state: Attempts,
        send: Callable[[A], Awaitable[T]],
        arg: A,
        definite: Callable[[T], bool],
        policy: RetryPolicy,
        observers: Sequence[Observer],
        deadline: float | None,
        first: T | TransportError | None = None,
    ) -> T | _Exhausted:
        """The retry loop: attempts through the service's breaker until ``definite`` holds.

        ``first`` is what the first attempt got, when the caller already made it (through a
        closed breaker, at ``state.started``, counted in ``state.attempts``): the loop goes on
        from there as if it had sent it.
        """
        breaker = self._breakers[state.service]
        clock = self._clock
        ended = sent = state.started
        stalled: asyncio.Task[Any] | None = None  # this task, while it waits for an outage
        try:
            while True:
                if first is None:
                    waited = breaker.state is not BreakerState.CLOSED
                    if stalled is None and waited:
                        stalled = self._stall(state.service)
                    # (A closed breaker lets every call through: no coroutine to ask it.)
                    if waited and not await breaker.acquire(until=deadline):
                        return _Exhausted(expired=True)
                    state.attempts += 1
                    for observer in observers:
                        observer.attempting(state)
                    # A first attempt that did not wait is sent as the call starts: no clock.
                    plain = state.attempts == 1 and not waited
                    if not plain:
                        sent = clock.monotonic()
                else:
                    plain = True
                unreachable = False
                try:
                    if first is None:
                        answer = await send(arg)
                    else:
                        made, first = first, None
                        if isinstance(made, TransportError):
                            raise made
                        answer = made
                except ServiceUnreachable as exc:
                    breaker.record_failure()
                    unreachable = True
                    state.last_error = str(exc)
                    if state.unreachable_since is None:
                        state.unreachable_since = clock.time()
                    if stalled is None:
                        stalled = self._stall(state.service)
                    now = clock.monotonic()
                    if (trail := state.kept(clock)) is not None:
                        trail.failed(sent, now, "unreachable", state.last_error)
                    for observer in observers:
                        observer.failed(state, exc)
                except TransportError as exc:
                    breaker.record_failure()
                    state.delivered += 1
                    state.last_error = str(exc)
                    state.unreachable_since = None
                    if stalled is not None:
                        self.stalled.pop(stalled, None)
                        stalled = None
                    now = clock.monotonic()
                    if (trail := state.kept(clock)) is not None:
                        trail.failed(sent, now, "lost", state.last_error)
                    for observer in observers:
                        observer.failed(state, exc)
                except BaseException:
                    breaker.release()
                    raise
                else:
                    breaker.record_success()
                    state.unreachable_since = None
                    if stalled is not None:
                        self.stalled.pop(stalled, None)
                        stalled = None
                    for observer in observers:
                        observer.answered(state)
                    if definite(answer):
                        # A plain call (one attempt, answered) keeps no trail: the step record's
                        # own times are its attempt's (see Trail).
                        if not plain and (trail := state.kept(clock)) is not None:
                            trail.answered(sent, clock.monotonic(), answer)
                        return answer
                    now = clock.monotonic()
                    if (trail := state.kept(clock)) is not None:
                        trail.answered(sent, now, answer)
                    state.delivered += 1
                    state.last_error = f"{state.service}: key still in flight"
                if unreachable:
                    state.outage += now - ended
                ended = now
                if deadline is not None and now >= deadline:
                    return _Exhausted(expired=True)
                if not unreachable and not policy.may_retry(
                    state.delivered, now - state.started - state.outage
                ):
                    return _Exhausted(expired=False)
                for observer in observers:
                    await observer.waiting(state, now - state.started)
                await clock.sleep(policy.backoff(state.attempts, self._rng))
        finally:
            if stalled is not None:
                self.stalled.pop(stalled, None)

    def _stall(self, service: str) -> asyncio.Task[Any] | None:
        task = asyncio.current_task()
        if task is not None:
            self.stalled[task] = service
        return task


#: The reply statuses that are no definite answer (``in_flight``, ``expired``).
_INDEFINITE = frozenset(status for status in ReplyStatus if not status.definite)


def _definite(reply: Reply) -> bool:
    return reply.status.definite


def _any(_answer: object) -> bool:
    return True
