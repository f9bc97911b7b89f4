"""Named crash points: places in the engine where a test can make the process die abruptly.

The engine calls ``crash.hit(name)`` at each point (before/after each log write, before/after
each service call, during compensation and confirmation). An armed point makes the process exit
at once with ``os._exit`` — no cleanup, no flush, as close to SIGKILL as Python gets — on its
``count``-th hit. Arming is read once at the edge (the CLI reads ``ORDERSAGA_CRASH_AT``) and
passed in; the library itself never reads the environment.

Point names: ``saga.created``, ``log.before:<what>``, ``log.after:<what>``,
``call.before:<step>:<phase>``, ``call.after:<step>:<phase>``, ``compensation.during``,
``confirmation.during``. ``fnmatch`` patterns are accepted, e.g. ``call.after:*:action``.
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

    def hit(self, name: str) -> None:
        if self.pattern is None or not fnmatch.fnmatchcase(name, self.pattern):
            return
        self.hits += 1
        if self.hits >= self.count:
            sys.stderr.write(f"ordersaga: crash point {name} fired\n")
            sys.stderr.flush()
            os._exit(CRASH_EXIT_CODE)


NO_CRASH = CrashPoints()
