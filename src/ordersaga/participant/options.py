"""What a service's command runner is given and what it counts (see :mod:`.kit`).

Everything is injected — the locking policy, the clock (its time and its sleep), the random
source, the pause
that tests use to make writers race — so tests never wait and never reach for globals.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ordersaga.clock import Clock, SystemClock
from ordersaga.protocol.messages import MAX_MESSAGE_AGE

__all__ = ["DEFAULT_MAX_BATCH", "MAX_PAYLOAD_BYTES", "KitStats", "LockingPolicy", "RunnerOptions"]

MAX_PAYLOAD_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class LockingPolicy:
    """How often and how patiently a command re-reads after losing an optimistic-locking race.

    The delay after failed attempt ``n`` (1-based) is drawn uniformly from
    ``[0, min(max_backoff, initial_backoff * 2 ** (n - 1))]`` (full jitter), so writers that
    collided do not collide again in lockstep. After ``max_attempts`` the command gives up with
    :class:`ConflictError` (a StorageError: nothing was applied; the caller may retry the key).
    """

    max_attempts: int = 100
    initial_backoff: float = 0.0005
    max_backoff: float = 0.02

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not 0 < self.initial_backoff <= self.max_backoff:
            raise ValueError("need 0 < initial_backoff <= max_backoff")

    def backoff(self, attempt: int, rng: random.Random) -> float:
        cap = min(self.max_backoff, self.initial_backoff * 2.0 ** min(attempt - 1, 64))
        return rng.uniform(0.0, cap)


#: Commands per group commit at most (a batch is one local transaction).
DEFAULT_MAX_BATCH = 256


@dataclass(frozen=True, slots=True)
class RunnerOptions:
    """What a service's runner is given rather than reaching for globals (tests inject all).

    ``pause``, when given, makes a command decide outside any transaction and then run the pause
    before its write phase (see the module docstring). Tests pass ``asyncio.sleep(0)``-like
    pauses to interleave in-process writers and force real version conflicts. By default there is
    none, and commands are decided inside their batch's transaction.

    ``max_batch`` caps the commands per group commit; 1 turns batching off (one transaction per
    command, as a benchmark baseline).

    ``max_message_age``: a command first sent (its ``sent_at``) longer ago than this many
    seconds is refused as ``expired`` (see :mod:`ordersaga.participant.retention`); ``None``
    accepts commands of any age (then this service's records must never be pruned).
    """

    locking: LockingPolicy = field(default_factory=LockingPolicy)
    rng: random.Random = field(default_factory=random.Random)
    #: Timestamps (``time()``) and the backoff between retries (``sleep``).
    clock: Clock = field(default_factory=SystemClock)
    pause: Callable[[], Awaitable[None]] | None = None
    max_payload_bytes: int = MAX_PAYLOAD_BYTES
    max_batch: int = DEFAULT_MAX_BATCH
    max_message_age: float | None = MAX_MESSAGE_AGE

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if self.max_message_age is not None and not self.max_message_age > 0:
            raise ValueError("max_message_age must be positive or None")


@dataclass(slots=True)
class KitStats:
    """Counters proving what happened.

    ``commits`` counts durable local transactions (a group commit carrying many commands is one);
    ``applied`` the commands they carried; ``conflicts`` every lost race (rolled back);
    ``replays`` the repeats answered from the idempotency table.
    """

    commands: int = 0
    commits: int = 0
    applied: int = 0
    conflicts: int = 0
    replays: int = 0
    invalid: int = 0
    expired: int = 0  # deliveries refused for their age (never looked at)
