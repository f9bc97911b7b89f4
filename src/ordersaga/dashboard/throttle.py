"""Failed sign-ins are rate limited per client address.

The operator token is a secret nobody can guess in a lifetime of tries, unless an operator chose a
weak one. Defence in depth: a client address that failed :data:`FAILURES_PER_MINUTE` sign-ins in
the last minute (the sign-in form or the JSON ``POST /api/session``) is answered ``429 Too Many
Requests`` with ``Retry-After`` until the oldest of them is a minute old — even with the right
token, so that a guesser learns nothing during the pause. A right token never counts against its
address. The window moves (limits' moving window, kept in this process's memory, like the
sessions): a steady guesser gets ten tries a minute, not ten per calendar minute.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.requests import Request

__all__ = ["FAILURES_PER_MINUTE", "SignInThrottle"]

FAILURES_PER_MINUTE = 10


class SignInThrottle:
    """Counts each client address's failed sign-ins over the last minute."""

    def __init__(self, failures_per_minute: int = FAILURES_PER_MINUTE) -> None:
        self._limit = RateLimitItemPerMinute(failures_per_minute)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    @staticmethod
    def _address(request: Request) -> str:
        return request.client.host if request.client is not None else "unknown"

    def wait(self, request: Request) -> int | None:
        """Seconds this client must wait before it may try again; None when it may try now."""
        address = self._address(request)
        if self._limiter.test(self._limit, address):
            return None
        reset = self._limiter.get_window_stats(self._limit, address).reset_time
        return max(1, math.ceil(reset - time.time()))

    def failed(self, request: Request) -> None:
        """Count a failed sign-in of this client."""
        self._limiter.hit(self._limit, self._address(request))
