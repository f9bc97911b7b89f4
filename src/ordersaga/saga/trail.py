"""The trail of one step call: each attempt and each probe as it happens, kept in memory.

A call's :class:`Trail` becomes the ``trail`` of the step record its outcome turns into
(:class:`~ordersaga.saga.store.base.Attempt` tuples), and so reaches the saga log in the write
that records the outcome — a write the engine makes anyway: recording attempts costs no write
of its own. The price: a crash loses the trail of a call still under way (recovery sends the
call again, under the same key, and records that one).

**A plain call keeps no trail.** Nearly every call is one attempt, sent as the call starts and
answered: that attempt *is* the step record (sent at its ``started_at``, answered at its
``ended_at``, give or take the microseconds it takes to build the command), so the engine
records nothing for it and :func:`attempts_of` reads it back from the record. Reading no clock
and storing no JSON for it keeps the engine's path as cheap as before. Any other call — a
retry, a wait for a service's breaker, a probe — keeps every attempt.
"""

from __future__ import annotations

from ordersaga.clock import Clock
from ordersaga.protocol.messages import Reply, ReplyStatus
from ordersaga.saga.store.base import Attempt, StepRecord, StepStatus

__all__ = ["Trail", "attempts_of"]

#: An attempt's result, by the status of the reply it got (see Attempt).
_RESULTS = {
    ReplyStatus.OK: "applied",
    ReplyStatus.REFUSED: "refused",
    ReplyStatus.INVALID: "refused",
    ReplyStatus.CONFLICT: "refused",
    ReplyStatus.IN_FLIGHT: "unknown",
    ReplyStatus.EXPIRED: "unknown",
}
_ERROR_CHARS = 200  # what an attempt keeps of a transport error's text


#: A plain attempt's result, by its step record's status.
_PLAIN = {StepStatus.SUCCEEDED: "applied", StepStatus.REFUSED: "refused"}


def attempts_of(step: StepRecord) -> tuple[Attempt, ...]:
    """Every attempt and probe of ``step``: its trail, or the one attempt of a plain call.

    A record with no trail and one attempt that succeeded or was refused is a plain call (or,
    written before trails were kept, a call of one attempt): its attempt spans the record.
    Other records without a trail (older ones of several attempts) have none to show.
    """
    if step.trail or step.attempts != 1 or step.status not in _PLAIN:
        return tuple(step.trail)
    duration = max(0.0, step.ended_at - step.started_at)
    return (Attempt("a", step.started_at, duration, _PLAIN[step.status]),)


class Trail:
    """Attempts and probes of one call; times come in on the monotonic clock.

    ``wall`` (the wall clock minus the monotonic clock, read at the first entry) turns a
    monotonic send time into the wall-clock time the log keeps.
    """

    __slots__ = ("_clock", "entries", "wall")

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.wall: float | None = None
        self.entries: list[Attempt] = []

    def _wall(self) -> float:
        if self.wall is None:
            self.wall = self._clock.time() - self._clock.monotonic()
        return self.wall

    def answered(self, sent: float, now: float, answer: object) -> None:
        """An attempt sent at ``sent`` got ``answer`` at ``now``."""
        if isinstance(answer, Reply):
            result = _RESULTS.get(answer.status, "unknown")
            self.entries.append(Attempt("a", sent + self._wall(), now - sent, result))

    def failed(self, sent: float, now: float, result: str, error: str) -> None:
        """An attempt got no answer: ``lost`` or ``unreachable``, and the error's text."""
        entry = Attempt("a", sent + self._wall(), now - sent, result, error[:_ERROR_CHARS])
        self.entries.append(entry)

    def probed(self, asked: float, now: float, found: str) -> None:
        """The key's status was probed at ``asked``: what the service said (or ``no answer``)."""
        self.entries.append(Attempt("p", asked + self._wall(), now - asked, found))

    def done(self) -> tuple[Attempt, ...]:
        return tuple(self.entries) if self.entries else ()
