"""A histogram cheap enough for the hot path: a bisect and two additions per observation.

Nothing here imports ``prometheus_client``: the engine, the kit and the group committer keep
these while they work, and a collector turns them into Prometheus families only when scraped
(see :func:`ordersaga.telemetry.exposition.histogram_family`). Everything runs on one event loop,
so an observation and a scrape never interleave.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

__all__ = ["BATCH_SIZES", "LATENCY_SECONDS", "SAGA_SECONDS", "Histogram"]

#: Bounds (seconds) for one step call: sub-millisecond in process, tens of ms over HTTP.
LATENCY_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
#: Bounds (seconds) for a whole saga, from admission to its end.
SAGA_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
#: Bounds for the writes carried by one group commit.
BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Histogram:
    """Counts per bucket (upper bounds inclusive, as Prometheus's ``le``), plus the sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        if list(bounds) != sorted(set(bounds)) or not bounds:
            raise ValueError("histogram bounds must be increasing and not empty")
        self.bounds = tuple(float(b) for b in bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, float]]:
        """``(le, observations at or below it)`` for every bound and ``+Inf``."""
        total = 0
        out: list[tuple[str, float]] = []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), float(total)))
        return out
