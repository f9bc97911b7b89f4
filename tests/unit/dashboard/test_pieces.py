"""The dashboard's pure pieces: the list filter, the timeline geometry, operator sessions."""

from __future__ import annotations

import pytest

from ordersaga.dashboard.auth import SESSION_SECONDS, Operators
from ordersaga.dashboard.filters import FilterError, ListFilter
from ordersaga.dashboard.timeline import LABEL, WIDTH, chart
from ordersaga.protocol.messages import Phase
from ordersaga.saga.store.base import SagaRecord, SagaStatus, StepRecord, StepStatus
from ordersaga.saga.store.operator import OperatorAction, SagaEntry


def test_a_filter_round_trips_through_its_query_string() -> None:
    listing = ListFilter.parse({"status": "failed", "attention": "1", "older_than": "15m",
                                "q": "o1", "cursor": "42"})  # fmt: skip
    assert listing.query() == "?status=failed&attention=1&older_than=15m&q=o1&cursor=42"
    assert ListFilter.parse(dict(p.split("=") for p in listing.query()[1:].split("&"))) == listing
    assert listing.query(cursor=None) == "?status=failed&attention=1&older_than=15m&q=o1"
    query = listing.saga_filter(now=1000.0)
    assert query.updated_before == 100.0 and query.id_prefix == "o1" and query.cursor == "42"
    assert ListFilter.parse({}).query() == "" and not ListFilter.parse({}).active
    for bad in ({"status": "gone"}, {"older_than": "soon"}, {"limit": "501"}, {"q": "x" * 201},
                {"cursor": "-1"}, {"attention": "maybe"}):  # fmt: skip
        with pytest.raises(FilterError):
            ListFilter.parse(bad)


def _step(step: str, phase: Phase, start: float, end: float, attempts: int = 1) -> StepRecord:
    return StepRecord(step, phase, StepStatus.SUCCEEDED, {}, None, attempts, start, end)


def test_the_timeline_puts_each_record_where_its_time_is() -> None:
    record = SagaRecord(
        "o1", "order", {}, "f", SagaStatus.FAILED,
        steps=(
            _step("reserve", Phase.ACTION, 100.0, 100.5, attempts=3),
            _step("reserve", Phase.COMPENSATE, 101.0, 102.0),
        ),
        created_at=100.0, updated_at=102.0,
    )  # fmt: skip
    drawn = chart(SagaEntry(record, actions=(OperatorAction("o1", "retry", "al", None, 101.0),)))
    first, second = drawn.bars
    assert (first.x, first.width, first.attempts) == (LABEL, WIDTH / 4, 3)
    assert (second.x, second.width) == (LABEL + WIDTH / 2, WIDTH / 2)
    assert second.label == "reserve (compensate) · inventory" and second.phase == "compensate"
    assert second.y > first.y and drawn.span_ms == 2000.0
    assert [(m.x, m.label) for m in drawn.marks] == [(LABEL + WIDTH / 2, "retry by al")]
    assert drawn.ticks[-1] == (LABEL + WIDTH, "2.00 s")
    empty = chart(SagaEntry(SagaRecord("o2", "order", {}, "f", SagaStatus.RUNNING)))
    assert empty.bars == () and empty.height > 0


def test_sessions_need_the_token_and_expire() -> None:
    now = [0.0]
    operators = Operators("secret", clock=lambda: now[0])
    assert operators.check_token("secret") and not operators.check_token("secre")
    assert not Operators(None).check_token("")
    session = operators.sign_in("alice")
    assert session != operators.sign_in("alice") and "secret" not in session
    assert operators._sessions[session][0] == "alice"
    now[0] = SESSION_SECONDS + 1
    operators.sign_in("bob")  # sweeps the expired ones
    assert session not in operators._sessions
