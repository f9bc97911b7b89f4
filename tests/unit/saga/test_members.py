"""The engine's enum members read once at import (a read through the class is slow on Python
3.11): each module constant is the very member, so ``is`` tests and lookups stay the same."""

from __future__ import annotations

import pytest

from ordersaga.protocol.messages import Phase, ReplyStatus
from ordersaga.saga import callresult, calls, driver, executor
from ordersaga.saga.breaker import BreakerState
from ordersaga.saga.callresult import CallStatus
from ordersaga.saga.result import SagaResult
from ordersaga.saga.store.base import SagaStatus, StepStatus

CONSTANTS = [
    (driver, "_ACTION", Phase.ACTION),
    (driver, "_COMPENSATE", Phase.COMPENSATE),
    (driver, "_CONFIRM", Phase.CONFIRM),
    (driver, "_RUNNING", SagaStatus.RUNNING),
    (driver, "_COMPENSATING", SagaStatus.COMPENSATING),
    (driver, "_FAILED", SagaStatus.FAILED),
    (driver, "_CONFIRMING", SagaStatus.CONFIRMING),
    (driver, "_CONFIRMED", SagaStatus.CONFIRMED),
    (driver, "_SUCCEEDED", CallStatus.SUCCEEDED),
    (driver, "_REFUSED", CallStatus.REFUSED),
    (driver, "_UNKNOWN", CallStatus.UNKNOWN),
    (driver, "_STEP_SUCCEEDED", StepStatus.SUCCEEDED),
    (driver, "_STEP_UNKNOWN", StepStatus.UNKNOWN),
    (driver, "_STEP_REFUSED", StepStatus.REFUSED),
    (driver, "_STEP_UNDELIVERED", StepStatus.UNDELIVERED),
    (calls, "_CLOSED", BreakerState.CLOSED),
    (callresult, "_OK", ReplyStatus.OK),
    (callresult, "_SUCCEEDED", CallStatus.SUCCEEDED),
    (callresult, "_REFUSED", CallStatus.REFUSED),
    (executor, "_RUNNING", SagaStatus.RUNNING),
]


@pytest.mark.parametrize(("module", "name", "member"), CONSTANTS)
def test_each_constant_is_its_member(module: object, name: str, member: object) -> None:
    assert getattr(module, name) is member


@pytest.mark.parametrize("status", list(SagaStatus))
def test_a_result_is_confirmed_when_decided_to_confirm(status: SagaStatus) -> None:
    confirmed = status in (SagaStatus.CONFIRMED, SagaStatus.CONFIRMING)
    assert SagaResult("s1", status, None).confirmed is confirmed
