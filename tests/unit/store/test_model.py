"""The transition check that every backend shares."""

from __future__ import annotations

import pytest

from ordersaga.errors import ConflictError
from ordersaga.protocol.messages import Phase
from ordersaga.saga.store.base import ALLOWED_TRANSITIONS, SagaStatus, StepRecord, StepStatus
from ordersaga.saga.store.model import Head, StepRow, check_update, make_update


@pytest.mark.parametrize("current", list(SagaStatus))
@pytest.mark.parametrize("target", [*SagaStatus, None])
def test_check_update_follows_the_transition_table(
    current: SagaStatus, target: SagaStatus | None
) -> None:
    allowed = not current.terminal and (target is None or target in ALLOWED_TRANSITIONS[current])
    if allowed:
        check_update("s", current, target)
    else:
        with pytest.raises(ConflictError):
            check_update("s", current, target)


def test_an_unknown_saga_takes_no_update() -> None:
    with pytest.raises(ConflictError, match="unknown saga"):
        check_update("s", None, None)


def test_a_refused_update_leaves_the_head_unchanged() -> None:
    head = Head(SagaStatus.CONFIRMING, None, False, 1.0, 3)
    with pytest.raises(ConflictError):
        head.apply(make_update("s", (), SagaStatus.FAILED, "r", True, 2.0), "s")
    assert head == Head(SagaStatus.CONFIRMING, None, False, 1.0, 3)
    head.apply(make_update("s", (), SagaStatus.CONFIRMED, None, True, 2.0), "s")
    assert head == Head(SagaStatus.CONFIRMED, None, True, 2.0, 4)


def test_step_rows_round_trip_through_json() -> None:
    record = StepRecord("pay", Phase.CONFIRM, StepStatus.UNKNOWN, {"b": [1, 2], "a": None}, "x", 3)
    row = StepRow.of(record)
    assert row.result == '{"a":null,"b":[1,2]}'
    assert row.to_record() == record
