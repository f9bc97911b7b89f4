"""Retry policies: validated, frozen values. The executor applies them; they hold no state."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from ordersaga.errors import DefinitionError


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How to retry a call whose outcome is unknown (only transport-level failures are retried).

    Attributes:
        initial_interval: the backoff cap before the second attempt, in seconds.
        backoff_coefficient: the cap grows by this factor after each failed attempt (>= 1).
        maximum_interval: the backoff cap never exceeds this.
        maximum_attempts: attempts in all, the first included; ``None`` retries forever.
        deadline: seconds after the first attempt after which no new attempt starts;
            ``None`` for no deadline.

    The delay before attempt ``n + 1`` is drawn uniformly from ``[0, cap_n]`` ("full jitter"),
    where ``cap_n = min(maximum_interval, initial_interval * backoff_coefficient ** (n - 1))``:
    concurrent sagas that failed together do not retry together.
    """

    initial_interval: float = 0.002
    backoff_coefficient: float = 2.0
    maximum_interval: float = 0.25
    maximum_attempts: int | None = 10
    deadline: float | None = 30.0
    #: No attempt limit and no deadline: the call retries until it succeeds. Derived from the
    #: two, once (the engine reads it at every step call).
    unlimited: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not (self.initial_interval > 0 and math.isfinite(self.initial_interval)):
            raise DefinitionError("retry policy: initial_interval must be a positive number")
        if not self.backoff_coefficient >= 1:
            raise DefinitionError("retry policy: backoff_coefficient must be >= 1")
        if not self.maximum_interval >= self.initial_interval:
            raise DefinitionError("retry policy: maximum_interval must be >= initial_interval")
        if self.maximum_attempts is not None and self.maximum_attempts < 1:
            raise DefinitionError("retry policy: maximum_attempts must be >= 1 or None")
        if self.deadline is not None and not self.deadline > 0:
            raise DefinitionError("retry policy: deadline must be positive or None")
        unlimited = self.maximum_attempts is None and self.deadline is None
        object.__setattr__(self, "unlimited", unlimited)  # (frozen: set once, here)

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """The delay after failed attempt number ``attempt`` (1-based)."""
        exponent = min(attempt - 1, 64)  # avoid float overflow on endless retries
        cap = min(self.maximum_interval, self.initial_interval * self.backoff_coefficient**exponent)
        return rng.uniform(0.0, cap)

    def may_retry(self, attempts: int, elapsed: float) -> bool:
        """Whether another attempt may start after ``attempts`` attempts and ``elapsed`` s."""
        if self.maximum_attempts is not None and attempts >= self.maximum_attempts:
            return False
        return self.deadline is None or elapsed < self.deadline


#: Forward actions: at --fault-rate 0.1 an attempt fails with probability 0.19, so ten attempts
#: all fail with probability 0.19**10 ~ 6e-8, and the status probe settles most of those.
ACTION_POLICY = RetryPolicy()
#: Compensations and confirmations must finish: retried without limit, with a capped backoff.
FOREVER_POLICY = RetryPolicy(maximum_interval=1.0, maximum_attempts=None, deadline=None)
#: Status probes after an action's budget is spent.
PROBE_POLICY = RetryPolicy(maximum_attempts=10, deadline=30.0)
