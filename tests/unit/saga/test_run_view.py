"""The engine's view of a running saga stays the record its log holds, write after write.

:class:`~ordersaga.saga.logwriter.Run` updates its fields in place on each write (no new record
per write); its ``record`` and what ``SagaObserver.logged`` reads must equal the store's record
after that write, whatever the path: confirmed, compensated, retried, flagged, redacted.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest

from ordersaga.clock import FakeClock
from ordersaga.protocol.messages import Command, Phase, Reply
from ordersaga.saga.executor import EngineSettings, SagaEngine
from ordersaga.saga.logwriter import Run
from ordersaga.saga.observe import LoggedSaga, SagaObserver
from ordersaga.saga.store.base import SagaRecord, SagaStatus, StepRecord, StepStatus
from ordersaga.saga.store.memory import MemoryStore

from .fakes import Ledger, ScriptedTransport
from .test_executor import make_definition

HEAD = ("saga_id", "status", "reason", "needs_attention", "attention_reason", "updated_at")


def _head(saga: LoggedSaga) -> tuple[Any, ...]:
    return tuple(getattr(saga, name) for name in (*HEAD, "created_at"))


def _steps(steps: Sequence[StepRecord]) -> list[tuple[Any, ...]]:
    # The trail's times go through whole microseconds in the log: compare what happened.
    return [
        (
            s.step,
            s.phase,
            s.status,
            dict(s.result),
            s.reason,
            s.attempts,
            s.started_at,
            s.ended_at,
            [(a.kind, a.result, a.error) for a in s.trail],
        )
        for s in steps
    ]


def _whole(record: SagaRecord) -> tuple[Any, ...]:
    return (
        _head(record),
        record.definition,
        record.fingerprint,
        dict(record.input),
        _steps(record.steps),
        record.compacted,
    )


class CheckedStore(MemoryStore):
    """Keeps its record after each update (a memory store's row, read back)."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock=clock)
        self.after: list[SagaRecord] = []

    async def update(self, saga_id: str, **kwargs: Any) -> None:
        await super().update(saga_id, **kwargs)
        stored = await self.load(saga_id)
        assert stored is not None
        self.after.append(stored)


class Seen(SagaObserver):
    """Keeps what each ``logged`` call read, and the run's record then."""

    def __init__(self) -> None:
        self.heads: list[tuple[Any, ...]] = []
        self.records: list[SagaRecord] = []
        self.whats: list[str] = []

    def logged(self, record: LoggedSaga, what: str, steps: Sequence[StepRecord]) -> None:
        self.heads.append(_head(record))
        self.whats.append(what)
        if isinstance(record, Run):
            self.records.append(record.record)


def _redacted(input: Mapping[str, Any]) -> Mapping[str, Any]:
    return {k: v for k, v in input.items() if k != "card"}


def _lost_twice(keys: set[str], transport: list[ScriptedTransport]) -> Any:
    return lambda c: "request" if c.key in keys and transport[0].sent[c.key] <= 2 else None


SCENARIOS = {
    "confirmed": ({}, set(), {}),
    "compensated": ({"C": True}, set(), {}),
    "retried": ({}, {"s1:b:action", "s1:c:confirm"}, {}),
    "retried-compensated": ({"C": True}, {"s1:b:action", "s1:a:compensate"}, {}),
    "flagged-undo": ({"C": True}, set(), {"s1:b:compensate": Reply.refused("cannot undo")}),
    "flagged-confirm": ({}, set(), {"s1:a:confirm": Reply.refused("cannot confirm")}),
}


@pytest.mark.parametrize("slow", [False, True])
@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_the_run_is_the_logs_record_after_every_write(name: str, slow: bool) -> None:
    refuse, lost, replies = SCENARIOS[name]
    ledgers = {n: Ledger(n, _refusing(refuse.get(n, False))) for n in "ABC"}
    for key, reply in replies.items():
        ledgers[_service(key)].replies[key] = reply
    sent: list[ScriptedTransport] = []
    transport = ScriptedTransport(ledgers, _lost_twice(lost, sent))
    sent.append(transport)
    clock = FakeClock()
    store = CheckedStore(clock)
    seen = Seen()
    definition = dataclasses.replace(make_definition(), redact=_redacted)
    engine = SagaEngine(
        store,
        transport,
        [definition],
        clock=clock,
        rng=random.Random(3),
        settings=EngineSettings(attention_after=0.0 if slow else 300.0),
        observer=seen,
    )
    await engine.start("trip", "s1", {"card": "4111", "x": 1}, "fp")
    assert len(store.after) == len(seen.heads) == len(seen.records) >= 2
    for stored, head, record in zip(store.after, seen.heads, seen.records, strict=True):
        assert head == _head(stored)
        assert _whole(record) == _whole(stored)
    assert seen.records[-1].input == {"x": 1}  # the decision's write redacted it
    if lost:  # a's result was written when b's call had to retry
        assert "a.result" in seen.whats
    if replies or (slow and lost):
        assert "attention" in seen.whats


def _refusing(refused: bool) -> Callable[[Command], bool]:
    return lambda c: refused


def _service(key: str) -> str:
    """The ledger of a key's step (``s1:b:compensate``: B)."""
    return key.split(":")[1].upper()


def test_a_run_made_from_a_record_gives_that_record_until_a_write() -> None:
    record = SagaRecord("s1", "trip", {"x": 1}, "fp", SagaStatus.RUNNING, created_at=5.0)
    run = Run(record, make_definition())
    assert run.record is record
    assert (run.saga_id, run.fingerprint, run.created_at, run.status) == (
        "s1",
        "fp",
        5.0,
        SagaStatus.RUNNING,
    )
    run.logged([], SagaStatus.COMPENSATING, "why", True, "look", {"x": 1}, 6.0)
    changed = run.record
    assert changed is not record and changed is run.record  # built once per change
    assert (
        dataclasses.replace(
            record,
            status=SagaStatus.COMPENSATING,
            reason="why",
            needs_attention=True,
            attention_reason="look",
            updated_at=6.0,
        )
        == changed
    )
    assert record.status is SagaStatus.RUNNING  # the record handed out did not change


def test_a_rewritten_step_record_keeps_its_place() -> None:
    first = StepRecord("a", Phase.ACTION, StepStatus.UNKNOWN, {}, "lost", 1, 1.0, 2.0)
    other = StepRecord("b", Phase.ACTION, StepStatus.SUCCEEDED, {}, None, 1, 1.5, 2.5)
    record = SagaRecord("s1", "trip", {}, "fp", SagaStatus.RUNNING, (first, other))
    run = Run(record, make_definition())
    again = dataclasses.replace(first, status=StepStatus.SUCCEEDED, reason=None)
    undo = StepRecord("a", Phase.COMPENSATE, StepStatus.SUCCEEDED, {}, None, 1, 3.0, 4.0)
    run.logged([again, undo], None, None, None, None, {}, 7.0)
    assert run.record.steps == (again, other, undo)
    assert (run.record.status, run.record.reason, run.record.updated_at) == (
        SagaStatus.RUNNING,
        None,
        7.0,
    )
