"""Named crash points: places in the engine where a test can make the process die abruptly.

The engine calls ``crash.hit(name)`` at each point (before/after each log write, before/after
each service call, during compensation and confirmation). An armed point makes the process exit
at once with ``os._exit`` — no cleanup, no flush, as close to SIGKILL as Python gets — on its
``count``-th hit. Arming is read once at the edge (the CLI reads ``ORDERSAGA_CRASH_AT``) and
passed in; the library itself never reads the environment.

Point names (``<what>`` is ``create``, ``<step>.result``, ``decision.confirm``,
``decision.compensate``, ``end.failed``, ``end.confirmed`` or ``attention``)::

    saga.created                  the saga's creation is durable, no step has run
    log.before:<what>             a log write is about to be submitted
    log.after:<what>              the log write is durable (acknowledged); for
                                  ``<step>.result`` (an intermediate step, whose record rides
                                  in the decision's write) both mark the moment its result is
                                  held in memory for that write
    call.before:<step>:<phase>    an attempt of a service call is about to be sent
    call.after:<step>:<phase>     the service answered (it applied or refused the call; the
                                  log does not know yet)
    compensation.during           a compensation succeeded, the next one has not started
    confirmation.during           a confirmation succeeded, the next one has not started
    store.before:commit           a group commit's writes are applied but not committed (SQL)
    store.after:commit            a group commit is durable, its callers not yet told (SQL)

``fnmatch`` patterns are accepted, e.g. ``call.after:*:action``.
"""

from __future__ import annotations

import fnmatch
import os
import sys
from dataclasses import dataclass

CRASH_EXIT_CODE = 86


@dataclass(slots=True)
class CrashPoints:
    pattern: str | None = None
    count: int = 1
    hits: int = 0

    @classmethod
    def parse(cls, spec: str | None) -> CrashPoints:
        """``"pattern"`` or ``"pattern@N"`` (die at the N-th matching hit)."""
        if not spec:
            return cls()
        pattern, _, n = spec.partition("@")
        return cls(pattern, int(n) if n else 1)

    @property
    def armed(self) -> bool:
        """Whether :meth:`hit` can do anything: a pattern is set, or a subclass observes hits."""
        return self.pattern is not None or type(self).hit is not CrashPoints.hit

    def hit(self, name: str) -> None:
        if self.pattern is None or not fnmatch.fnmatchcase(name, self.pattern):
            return
        self.hits += 1
        if self.hits >= self.count:
            sys.stderr.write(f"ordersaga: crash point {name} fired\n")
            sys.stderr.flush()
            os._exit(CRASH_EXIT_CODE)


NO_CRASH = CrashPoints()
