"""Traces of sagas: one trace per saga, continued by whoever drives it (OpenTelemetry).

Every runner of a saga — the process that started it, a recovery after a crash, a worker that
took it over — opens a ``saga <definition>`` span, with one child span per step call
(``<step> <phase>``, retries and probe included); the HTTP transport carries the step span to
the service in the ``traceparent`` header, and the service's span continues it.

Which trace a saga belongs to is kept in its log, so that every runner continues the same one:

* a saga started under a current span (say, an API request's) stores that span's
  ``traceparent`` in its input under :data:`TRACE_KEY`, at creation (the ``stamp`` hook);
  every runner's saga span is then a child of it;
* otherwise its trace id is derived from the saga id (a hash), so that every runner, in any
  process, lands in the same trace without anything to store.

A saga's input holding the key is harmless: steps read only the keys they know, and the
fingerprint that tells a resubmission from another saga is computed before it is added.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any

from ordersaga.protocol.messages import Phase
from ordersaga.saga.calls import CallOutcome
from ordersaga.saga.observe import SagaObserver
from ordersaga.saga.store.base import SagaRecord
from ordersaga.telemetry.tracing import Tracing

__all__ = ["TRACE_KEY", "SagaSpans", "saga_trace_ids"]

#: Where a saga's input keeps the ``traceparent`` it was started under.
TRACE_KEY = "_traceparent"


def saga_trace_ids(saga_id: str) -> tuple[int, int]:
    """The (trace id, parent span id) of a saga started under no span: a hash of its id."""
    digest = hashlib.sha256(f"ordersaga saga {saga_id}".encode()).digest()
    return int.from_bytes(digest[:16], "big") or 1, int.from_bytes(digest[16:24], "big") or 1


class SagaSpans(SagaObserver):
    """Opens the saga and step spans (see the module doc)."""

    def __init__(self, tracing: Tracing) -> None:
        self.tracing = tracing

    def stamp(self, saga_id: str, input: Mapping[str, Any]) -> Mapping[str, Any]:
        if TRACE_KEY in input:
            return input
        traceparent = self.tracing.current_traceparent()
        return input if traceparent is None else {**input, TRACE_KEY: traceparent}

    def driving(self, record: SagaRecord) -> AbstractContextManager[Any]:
        stored = record.input.get(TRACE_KEY)
        parent = None
        if not isinstance(stored, str) or not stored:
            stored = None
            parent = self.tracing.remote_parent(*saga_trace_ids(record.saga_id))
        return self.tracing.span(
            f"saga {record.definition}",
            traceparent=stored,
            parent=parent,
            attributes={
                "ordersaga.saga_id": record.saga_id,
                "ordersaga.status": record.status.value,
                "ordersaga.resumed": bool(record.steps),
            },
        )

    def calling(self, saga_id: str, step: str, phase: Phase) -> AbstractContextManager[Any]:
        return self.tracing.span(
            f"{step} {phase.value}",
            kind="client",
            attributes={
                "ordersaga.saga_id": saga_id,
                "ordersaga.step": step,
                "ordersaga.phase": phase.value,
            },
        )

    def called(
        self, saga_id: str, step: str, phase: Phase, outcome: CallOutcome, seconds: float
    ) -> None:
        span = self.tracing.current_span()
        span.set_attribute("ordersaga.outcome", outcome.status.value)
        span.set_attribute("ordersaga.attempts", outcome.attempts)
