"""The trail of one step call: each attempt and each probe as it happens, kept in memory.

A call's :class:`Trail` becomes the ``trail`` of the step record its outcome turns into
(:class:`~ordersaga.saga.store.base.Attempt` tuples), and so reaches the saga log in the write
that records the outcome — a write the engine makes anyway: recording attempts costs no write
of its own. The price: a crash loses the trail of a call still under way (recovery sends the
call again, under the same key, and records that one).
"""

from __future__ import annotations

from ordersaga.protocol.messages import Reply, ReplyStatus
from ordersaga.saga.store.base import Attempt

__all__ = ["Trail"]

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


class Trail:
    """Attempts and probes of one call; times come in on the monotonic clock.

    ``wall`` is the wall clock minus the monotonic clock when the call began: what turns a
    monotonic send time into the wall-clock time the log keeps.
    """

    __slots__ = ("entries", "wall")

    def __init__(self, wall: float) -> None:
        self.wall = wall
        self.entries: list[Attempt] = []

    def answered(self, sent: float, now: float, answer: object) -> None:
        """An attempt sent at ``sent`` got ``answer`` at ``now``."""
        if isinstance(answer, Reply):
            result = _RESULTS.get(answer.status, "unknown")
            self.entries.append(Attempt("a", sent + self.wall, now - sent, result))

    def failed(self, sent: float, now: float, result: str, error: str) -> None:
        """An attempt got no answer: ``lost`` or ``unreachable``, and the error's text."""
        entry = Attempt("a", sent + self.wall, now - sent, result, error[:_ERROR_CHARS])
        self.entries.append(entry)

    def probed(self, asked: float, now: float, found: str) -> None:
        """The key's status was probed at ``asked``: what the service said (or ``no answer``)."""
        self.entries.append(Attempt("p", asked + self.wall, now - asked, found))

    def done(self) -> tuple[Attempt, ...]:
        return tuple(self.entries)
