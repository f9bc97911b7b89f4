"""What an operator sees of a saga, as JSON-ready dicts: a list row and the whole timeline.

The same views serve ``ordersaga sagas list|show --json``, the text renderings and the order
API's ``GET /orders``. Card data is masked (its last four digits) wherever it could appear: the
order input, step replies and reasons. Times are ISO 8601 in UTC; durations in milliseconds.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from ordersaga.orders.cards import mask_card
from ordersaga.orders.order_saga import ORDER_SAGA
from ordersaga.protocol.messages import Phase
from ordersaga.saga.definition import SagaDefinition
from ordersaga.saga.outcome import compensations_of, failure_of, retries_of
from ordersaga.saga.store.base import Attempt, SagaRecord, SagaStatus, StepRecord, StepStatus
from ordersaga.saga.store.operator import OperatorAction, SagaEntry
from ordersaga.saga.trail import attempts_of

__all__ = [
    "DECIDED",
    "attempt_view",
    "current_step",
    "iso_time",
    "list_row",
    "masked",
    "saga_view",
    "step_view",
]

DEFINITIONS: dict[str, SagaDefinition] = {ORDER_SAGA.name: ORDER_SAGA}
DECIDED = {
    SagaStatus.CONFIRMING: "confirmed",
    SagaStatus.CONFIRMED: "confirmed",
    SagaStatus.COMPENSATING: "failed",
    SagaStatus.FAILED: "failed",
}
#: A step record's status in words: what became of the call.
RESULTS = {
    StepStatus.SUCCEEDED: "applied",
    StepStatus.REFUSED: "refused",
    StepStatus.UNKNOWN: "unknown",
    StepStatus.UNDELIVERED: "undelivered",
}


def iso_time(epoch: float | None) -> str | None:
    if not epoch:
        return None
    stamp = dt.datetime.fromtimestamp(epoch, tz=dt.UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def masked(value: Any) -> Any:
    """``value`` (JSON) with card data masked in every string."""
    if isinstance(value, str):
        return mask_card(value)
    if isinstance(value, dict):
        return {key: masked(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [masked(item) for item in value]
    return value


def current_step(record: SagaRecord) -> str | None:
    """The step an unfinished saga is at (``name``, or ``name (compensate|confirm)``).

    Compensations and confirmations are logged together at their end, so for a saga that is
    compensating or confirming this is the first one the log does not show done yet.
    """
    definition = DEFINITIONS.get(record.definition)
    if definition is None or record.status.terminal:
        return None
    if record.status is SagaStatus.RUNNING:
        for step in definition.forward_steps:
            if record.step(step.name) is None:
                return step.name
    elif record.status is SagaStatus.COMPENSATING:
        for step in reversed(definition.forward_steps):
            action = record.step(step.name)
            if action is None or action.status is StepStatus.REFUSED:
                continue
            if record.step(step.name, Phase.COMPENSATE) is None:
                return f"{step.name} (compensate)"
    else:
        for step in definition.retriable_steps:
            if record.step(step.name, Phase.CONFIRM) is None:
                return f"{step.name} (confirm)"
    return None


def list_row(entry: SagaEntry) -> dict[str, Any]:
    """One saga in a list: where it stands, what it cost so far, whether it needs a person."""
    record = entry.record
    failure = failure_of(record)
    return {
        "order_id": record.saga_id,
        "status": record.status.value,
        "outcome": DECIDED.get(record.status),
        "created_at": iso_time(record.created_at),
        "updated_at": iso_time(record.updated_at),
        "current_step": current_step(record),
        "attempts": sum(step.attempts for step in record.steps),
        "needs_attention": record.needs_attention,
        "attention_reason": _attention_reason(record),
        "reason": None if record.reason is None else mask_card(record.reason),
        "step": None if failure is None else failure.step,
        "cause": None if failure is None else failure.cause,
        "worker": entry.owner,
    }


def _attention_reason(record: SagaRecord) -> str | None:
    if not record.needs_attention:
        return None
    if record.attention_reason is None:  # flagged by a build that kept no reason
        return "flagged (no reason recorded)"
    return mask_card(record.attention_reason)


def _ms(seconds: float) -> float:
    return round(max(0.0, seconds) * 1000, 3)


def attempt_view(attempt: Attempt) -> dict[str, Any]:
    """One attempt of a step call: when it was sent, how long it took, what came of it."""
    error = None if attempt.error is None else mask_card(attempt.error)
    return {
        "at": iso_time(attempt.at),
        "duration_ms": _ms(attempt.duration),
        "result": attempt.result,
        "error": error,
    }


def probe_view(attempt: Attempt) -> dict[str, Any]:
    """One status probe of a step's key: when, and what the service said it knew."""
    return {
        "at": iso_time(attempt.at),
        "duration_ms": _ms(attempt.duration),
        "found": attempt.result,
    }


def step_view(step: StepRecord) -> dict[str, Any]:
    """One step record with its whole trail (``attempts``, ``probes``: see Attempt).

    A plain call's one attempt is read from the record itself; a record of several attempts
    written before attempts were recorded has none to show: its ``attempt_count`` still says
    how many there were.
    """
    duration = max(0.0, step.ended_at - step.started_at) if step.started_at else None
    reason = step.reason or ""
    trail = attempts_of(step)
    probes = [probe_view(a) for a in trail if a.kind == "p"]
    probed = bool(probes) or (not step.trail and ("probe" in reason or "outcome unknown" in reason))
    return {
        "step": step.step,
        "phase": step.phase.value,
        "status": step.status.value,
        "result": RESULTS[step.status],
        "attempt_count": step.attempts,
        "attempts": [attempt_view(a) for a in trail if a.kind == "a"],
        "probes": probes,
        "retries": max(0, step.attempts - 1),
        "probed": probed,
        "started_at": iso_time(step.started_at),
        "ended_at": iso_time(step.ended_at),
        "duration_ms": None if duration is None else round(duration * 1000, 3),
        "reason": None if step.reason is None else mask_card(step.reason),
        "reply": masked(dict(step.result)),
    }


def _action_view(action: OperatorAction) -> dict[str, Any]:
    note = None if action.note is None else mask_card(action.note)
    return {"at": iso_time(action.at), "who": action.who, "action": action.action, "note": note}


def _decision(record: SagaRecord) -> dict[str, Any] | None:
    """The decision and when it was made (the deciding step's end), once made."""
    outcome = DECIDED.get(record.status)
    if outcome is None:
        return None
    failure = failure_of(record)
    at = record.created_at if not record.steps else None
    for step in record.steps:
        if step.phase is not Phase.ACTION:
            continue
        if outcome == "confirmed" or (failure is not None and step.step == failure.step):
            at = step.ended_at
        if outcome == "failed" and failure is not None and step.step == failure.step:
            break
    return {"outcome": outcome, "at": iso_time(at)}


def saga_view(entry: SagaEntry) -> dict[str, Any]:
    """The whole timeline of one saga (``ordersaga sagas show --json``)."""
    record = entry.record
    lease = entry.lease_until
    return {
        **list_row(entry),
        "definition": record.definition,
        "lease_until": iso_time(lease) if lease else None,
        "retries": retries_of(record),
        "compensations": compensations_of(record),
        "decision": _decision(record),
        "input": masked(dict(record.input)),
        "steps": [step_view(step) for step in record.steps],
        "actions": [_action_view(action) for action in entry.actions],
    }
