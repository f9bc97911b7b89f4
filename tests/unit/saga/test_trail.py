"""Each attempt and probe of a step call is recorded, and every attention flag says why.

Scripted services and a fake clock (the backoff advances time without waiting); the saga log is
the in-memory store, whose records go through the same serialisation as the SQL ones.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter

from ordersaga.clock import FakeClock
from ordersaga.errors import ServiceUnreachable
from ordersaga.protocol.messages import Command, Phase, Reply
from ordersaga.saga.executor import EngineSettings, SagaEngine
from ordersaga.saga.retry import RetryPolicy
from ordersaga.saga.store.base import SagaStatus, StepRecord
from ordersaga.saga.store.memory import MemoryStore
from ordersaga.saga.trail import attempts_of

from .fakes import Ledger, ScriptedTransport
from .test_executor import make_definition


def _attempts(step: StepRecord) -> list[str]:
    return [a.result for a in attempts_of(step) if a.kind == "a"]


def _check_times(step: StepRecord) -> None:
    times = [a.at for a in attempts_of(step)]
    assert times == sorted(times) and all(a.duration >= 0 for a in attempts_of(step))
    # The log keeps whole microseconds.
    assert step.started_at - 1e-6 <= times[0] and times[-1] <= step.ended_at + 1e-6


async def test_lost_attempts_the_probe_and_the_answer_are_all_in_the_log() -> None:
    # s1's action at A: the request lost twice, then the response lost every time (applied);
    # the budget spent, the probe finds it applied. B's action is refused after a lost request.
    sent: Counter[str] = Counter()

    def fail(command: Command) -> str | None:
        sent[command.key] += 1
        if command.key == "s1:a:action":
            return "request" if sent[command.key] <= 2 else "response"
        if command.key == "s1:b:action" and sent[command.key] == 1:
            return "request"
        return None

    ledgers = {n: Ledger(n, (lambda c: True) if n == "B" else (lambda c: False)) for n in "ABC"}
    store = MemoryStore()
    engine = SagaEngine(
        store,
        ScriptedTransport(ledgers, fail),
        [make_definition()],
        clock=FakeClock(),
        rng=random.Random(3),
        settings=EngineSettings(action_policy=RetryPolicy(maximum_attempts=4)),
    )
    result = await engine.start("trip", "s1", {}, "fp")
    assert result.status is SagaStatus.FAILED
    record = await store.load("s1")
    assert record is not None
    a = record.step("a")
    assert a is not None and a.attempts == 4
    assert _attempts(a) == ["lost", "lost", "lost", "lost"]
    assert [(p.kind, p.result) for p in a.trail if p.kind == "p"] == [("p", "applied")]
    assert a.trail[-1].kind == "p"  # the probe came after the attempts
    assert a.trail[0].error == "scripted"  # the transport error's text
    _check_times(a)
    b = record.step("b")
    assert b is not None and _attempts(b) == ["lost", "refused"] and b.attempts == 2
    _check_times(b)
    undo = record.step("a", Phase.COMPENSATE)
    assert undo is not None and _attempts(undo) == ["applied"]
    assert undo.trail == ()  # a plain call: its one attempt is the record itself
    (plain,) = attempts_of(undo)
    assert (plain.at, plain.duration) == (undo.started_at, undo.ended_at - undo.started_at)


async def test_a_compensation_that_keeps_failing_is_flagged_with_its_reason() -> None:
    # C refuses: a and b are compensated. B's compensation finds B unreachable for a while.
    down = True

    class Transport(ScriptedTransport):
        async def send(self, command: Command) -> Reply:
            if down and command.key == "s1:b:compensate":
                self.sent[command.key] += 1
                raise ServiceUnreachable("B: connection refused")
            return await super().send(command)

    ledgers = {n: Ledger(n, (lambda c: True) if n == "C" else (lambda c: False)) for n in "ABC"}
    store = MemoryStore()
    transport = Transport(ledgers)
    engine = SagaEngine(
        store,
        transport,
        [make_definition()],
        clock=FakeClock(),
        rng=random.Random(3),
        settings=EngineSettings(attention_after=5.0),
    )
    running = asyncio.ensure_future(engine.start("trip", "s1", {}, "fp"))
    while True:  # the fake clock's sleeps yield: wait until the saga is flagged
        record = await store.load("s1")
        if record is not None and record.needs_attention:
            break
        await asyncio.sleep(0)
    assert record.status is SagaStatus.COMPENSATING
    reason = record.attention_reason or ""
    assert reason.startswith("b (compensate): B undo still failing after "), reason
    assert "B: connection refused" in reason
    down = False  # the outage ends: the compensation gets through, the flag is cleared
    result = await running
    assert result.status is SagaStatus.FAILED
    record = await store.load("s1")
    assert record is not None and not record.needs_attention and record.attention_reason is None
    undo = record.step("b", Phase.COMPENSATE)
    assert undo is not None
    results = _attempts(undo)
    assert results[-1] == "applied" and set(results[:-1]) == {"unreachable"}
    assert len(results) == transport.sent["s1:b:compensate"] == undo.attempts
