"""The overview: what the saga log says about the flow of orders, read at each refresh.

Whole-log numbers come from the status counts (one indexed query). What needs the steps —
throughput, retries and compensations per order, how each service answered — is read from the
newest :data:`SAMPLE` sagas only, so a refresh costs the same on a log of a million sagas; the
page says so ("over the newest N"). Circuit breakers live in the executing processes, not in the
log: the log tells each service's recent calls, the ones that needed retries and the ones whose
outcome stayed unknown, and the state shown is derived from those (an executor's
``ordersaga_breaker_state`` on its ``/metrics`` is the breaker itself).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

from ordersaga.ops.views import list_row
from ordersaga.orders.order_saga import STEP_SERVICES
from ordersaga.saga.outcome import compensations_of, retries_of
from ordersaga.saga.store.base import SagaStatus, SagaStore, StepStatus
from ordersaga.saga.store.operator import SagaEntry, SagaFilter

__all__ = ["BUCKETS", "SAMPLE", "SERVICE_WINDOW", "overview"]

SAMPLE = 500
BUCKETS = 30  # one a minute, the last half hour
SERVICE_WINDOW = 300.0  # seconds: "recent" calls of a service
_ATTENTION_SHOWN = 10
_IN_FLIGHT = (SagaStatus.RUNNING, SagaStatus.COMPENSATING, SagaStatus.CONFIRMING)


async def overview(store: SagaStore, now: float) -> dict[str, Any]:
    """The overview's numbers (JSON-ready) at wall-clock time ``now``."""
    counts = await store.count_by_status()
    sample = (await store.list_sagas(SagaFilter(limit=SAMPLE))).entries
    attention = await store.list_sagas(SagaFilter(needs_attention=True, limit=_ATTENTION_SHOWN))
    total = sum(counts.values())
    confirmed = counts.get(SagaStatus.CONFIRMED, 0) + counts.get(SagaStatus.CONFIRMING, 0)
    failed = counts.get(SagaStatus.FAILED, 0) + counts.get(SagaStatus.COMPENSATING, 0)
    decided = [e.record for e in sample if e.record.status.terminal]
    return {
        "total": total,
        "statuses": {status.value: counts.get(status, 0) for status in SagaStatus},
        "outcomes": {"confirmed": confirmed, "failed": failed},
        "in_flight": sum(counts.get(status, 0) for status in _IN_FLIGHT),
        "needs_attention": {
            "sagas": [list_row(entry) for entry in attention.entries],
            "more": attention.next_cursor is not None,
        },
        "sample": len(sample),
        "per_order": {
            "retries": _mean([retries_of(r) for r in decided]),
            "compensations": _mean([compensations_of(r) for r in decided]),
            "max_retries": max((retries_of(r) for r in decided), default=0),
        },
        "throughput": _throughput(sample, now),
        "services": _services(sample, now),
    }


def _mean(values: Sequence[int]) -> float:
    return round(sum(values) / len(values), 3) if values else 0.0


def _throughput(sample: Sequence[SagaEntry], now: float) -> dict[str, Any]:
    """Sagas finished per minute over the last :data:`BUCKETS` minutes (oldest first)."""
    per_minute = [0] * BUCKETS
    for entry in sample:
        record = entry.record
        if not record.status.terminal or not record.updated_at:
            continue
        age = now - record.updated_at
        if 0 <= age < BUCKETS * 60:
            per_minute[BUCKETS - 1 - math.floor(age / 60)] += 1
    return {"per_minute": per_minute, "last_minute": per_minute[-1]}


def _services(sample: Sequence[SagaEntry], now: float) -> list[dict[str, Any]]:
    """Each service's calls ended in the last :data:`SERVICE_WINDOW` seconds, per the log."""
    calls: Counter[str] = Counter()
    retried: Counter[str] = Counter()
    unknown: Counter[str] = Counter()
    last: dict[str, tuple[float, bool]] = {}  # service -> (time, troubled) of its latest call
    for entry in sample:
        for step in entry.record.steps:
            service = STEP_SERVICES.get(step.step)
            if service is None or now - step.ended_at > SERVICE_WINDOW:
                continue
            troubled = step.status is StepStatus.UNKNOWN
            calls[service] += 1
            retried[service] += step.attempts > 1
            unknown[service] += troubled
            if step.ended_at >= last.get(service, (0.0, False))[0]:
                last[service] = (step.ended_at, troubled)
    rows = []
    for service in dict.fromkeys(STEP_SERVICES.values()):
        rows.append(
            {
                "service": service,
                "calls": calls[service],
                "retried": retried[service],
                "unknown": unknown[service],
                "state": _state(calls[service], retried[service], last.get(service)),
            }
        )
    return rows


def _state(calls: int, retried: int, last: tuple[float, bool] | None) -> str:
    """``idle``, ``ok``, ``degraded`` (calls needed retries) or ``failing`` (latest unknown)."""
    if last is None or not calls:
        return "idle"
    if last[1]:
        return "failing"
    return "degraded" if retried * 10 >= calls else "ok"
