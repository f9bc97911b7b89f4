"""Executor paths the main tests do not take: cancelled callers, a failing run with a waiter,
resumed sagas handing earlier results on, and what the engine counts and keeps on recovery."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from ordersaga.clock import FakeClock
from ordersaga.errors import ConflictError, OwnershipLost, ServiceUnreachable
from ordersaga.protocol.messages import Command, Phase, Reply
from ordersaga.saga.calls import DEADLINE_MARK
from ordersaga.saga.definition import Invocation, SagaContext, SagaDefinition, Step, StepKind
from ordersaga.saga.executor import EngineSettings, SagaEngine, SagaResult
from ordersaga.saga.outcome import CANCELLED_REASON
from ordersaga.saga.recovery import recover
from ordersaga.saga.store.base import SagaStatus, StepRecord, StepStatus
from ordersaga.saga.store.memory import MemoryStore
from ordersaga.saga.store.operator import OperatorAction, Repair

from .fakes import Ledger, ScriptedTransport
from .test_executor import builder, compensations_sent, make_definition, world


class GatedTransport(ScriptedTransport):
    """Records each command; holds a command whose key is gated until the test opens the gate."""

    def __init__(self, services: dict[str, Ledger]) -> None:
        super().__init__(services)
        self.commands: dict[str, Command] = {}
        self.gates: dict[str, asyncio.Event] = {}
        self.waiting: dict[str, asyncio.Event] = {}

    def gate(self, key: str) -> None:
        self.gates[key] = asyncio.Event()
        self.waiting[key] = asyncio.Event()

    async def send(self, command: Command) -> Reply:
        self.commands[command.key] = command
        if command.key in self.gates:
            self.waiting[command.key].set()
            await self.gates[command.key].wait()
        return await super().send(command)


class WatchedStore(MemoryStore):
    """Tells when a saga's log reaches a terminal status; can refuse or break its updates."""

    def __init__(self) -> None:
        super().__init__()
        self.ended = asyncio.Event()
        self.refused = asyncio.Event()
        self.refuse: BaseException | None = None

    async def update(self, saga_id: str, **kwargs: Any) -> None:
        if self.refuse is not None:
            self.refused.set()
            raise self.refuse
        await super().update(saga_id, **kwargs)
        status = kwargs.get("status")
        if status is not None and status.terminal:
            self.ended.set()


def gated_world(
    refuse_c: bool = True,
) -> tuple[SagaEngine, dict[str, Ledger], GatedTransport, WatchedStore]:
    ledgers = {n: Ledger(n, (lambda c: refuse_c) if n == "C" else (lambda c: False)) for n in "ABC"}
    transport = GatedTransport(ledgers)
    store = WatchedStore()
    engine = SagaEngine(
        store, transport, [make_definition()], clock=FakeClock(), rng=random.Random(3)
    )
    return engine, ledgers, transport, store


@contextmanager
def loop_errors() -> Iterator[list[dict[str, Any]]]:
    """What the event loop reports to its exception handler (e.g. an exception never retrieved)."""
    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: seen.append(context))
    try:
        yield seen
    finally:
        gc.collect()  # a task or future nobody retrieved reports itself when collected
        loop.set_exception_handler(previous)


async def test_a_cancelled_caller_leaves_the_compensations_to_finish() -> None:
    engine, ledgers, transport, store = gated_world()
    transport.gate("s1:b:compensate")
    caller = asyncio.create_task(engine.start("trip", "s1", {}, "fp"))
    await transport.waiting["s1:b:compensate"].wait()  # compensating, b's undo on its way
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert "s1" not in engine.running
    transport.gates["s1:b:compensate"].set()
    await asyncio.wait_for(store.ended.wait(), 10)
    # Cancelling the caller did not cut the compensation short: both undone, in reverse.
    assert compensations_sent(transport) == ["s1:b:compensate", "s1:a:compensate"]
    assert ledgers["A"].state["s1:a"] == ledgers["B"].state["s1:b"] == "compensated"
    record = await store.load("s1")
    assert record is not None and record.status is SagaStatus.FAILED
    assert record.step("a", Phase.COMPENSATE) is not None


async def test_a_compensation_failing_after_its_caller_left_reports_nothing_unretrieved() -> None:
    """The saga's new owner finishes it; the orphaned compensation's error is not an alarm."""
    engine, ledgers, transport, store = gated_world()
    transport.gate("s1:a:compensate")
    with loop_errors() as errors:
        caller = asyncio.create_task(engine.start("trip", "s1", {}, "fp"))
        await transport.waiting["s1:a:compensate"].wait()
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        store.refuse = ConflictError("fenced: another worker owns s1")
        transport.gates["s1:a:compensate"].set()
        # The compensation goes on alone: a is undone, then its final log write is refused.
        await asyncio.wait_for(store.refused.wait(), 10)
        await asyncio.sleep(0)  # one turn: the orphaned task's done callbacks run
        del caller
    assert errors == []
    assert transport.sent["s1:a:compensate"] == 1 and ledgers["A"].state["s1:a"] == "compensated"
    record = await store.load("s1")
    assert record is not None and record.status is SagaStatus.COMPENSATING


@pytest.mark.parametrize("waiters", [0, 1])
async def test_a_run_that_raises_raises_for_its_waiters_too_and_frees_the_id(waiters: int) -> None:
    engine, _, transport, store = gated_world(refuse_c=False)
    transport.gate("s1:a:action")
    with loop_errors() as errors:
        first = asyncio.create_task(engine.start("trip", "s1", {}, "fp"))
        await transport.waiting["s1:a:action"].wait()
        others = [asyncio.create_task(engine.start("trip", "s1", {}, "fp")) for _ in range(waiters)]
        await asyncio.sleep(0)  # one turn: each waiter finds s1 running and waits for it
        broken = RuntimeError("saga log unreachable")
        store.refuse = broken
        transport.gates["s1:a:action"].set()
        outcomes = await asyncio.wait_for(
            asyncio.gather(first, *others, return_exceptions=True), 10
        )
        del first, others
    assert outcomes == [broken] * (1 + waiters)  # the run's own error, for every caller
    assert errors == []  # and nobody's left unretrieved
    assert "s1" not in engine.running
    # The id is free again: the next start finishes the saga the log shows unfinished.
    store.refuse = None
    del transport.gates["s1:a:action"]
    again = await engine.start("trip", "s1", {}, "fp")
    assert (again.status, again.replayed) == (SagaStatus.CONFIRMED, True)


def chain_definition() -> SagaDefinition:
    """b's and c's calls carry what a returned and the saga id (as a real order passes ids on)."""

    def carry(service: str, action: str) -> Any:
        def build(ctx: SagaContext) -> Invocation:
            earlier = {name: dict(body) for name, body in ctx.results.items()}
            return Invocation(service, action, {"saga": ctx.saga_id, "earlier": earlier})

        return build

    C, P = StepKind.COMPENSATABLE, StepKind.PIVOT
    return SagaDefinition(
        "chain",
        (
            Step("a", C, carry("A", "do"), carry("A", "undo")),
            Step("b", C, carry("B", "do"), carry("B", "undo")),
            Step("c", P, carry("C", "do"), carry("C", "undo")),
        ),
    )


@pytest.mark.parametrize("refuse_c", [False, True])
async def test_a_resumed_saga_hands_its_logged_results_and_id_to_later_steps(
    refuse_c: bool,
) -> None:
    ledgers = {n: Ledger(n, (lambda c: refuse_c) if n == "C" else (lambda c: False)) for n in "ABC"}
    transport = GatedTransport(ledgers)
    store = MemoryStore()
    engine = SagaEngine(store, transport, [chain_definition()], clock=FakeClock())
    await store.create("s1", "chain", {}, "fp")
    # A crash after a's result was logged: only the log knows what a returned.
    logged = {"token": "from-a"}
    await store.update("s1", steps=[StepRecord("a", Phase.ACTION, StepStatus.SUCCEEDED, logged)])
    [result] = await recover(engine)
    assert result.status is (SagaStatus.FAILED if refuse_c else SagaStatus.CONFIRMED)
    assert "s1:a:action" not in transport.commands
    b = transport.commands["s1:b:action"].payload
    assert b == {"saga": "s1", "earlier": {"a": logged}}
    c = transport.commands["s1:c:action"].payload
    assert c["saga"] == "s1" and c["earlier"]["a"] == logged and set(c["earlier"]) == {"a", "b"}
    if refuse_c:  # the compensations are built from the same results
        undo_a = transport.commands["s1:a:compensate"].payload
        assert undo_a["saga"] == "s1" and undo_a["earlier"]["a"] == logged


async def test_a_resumed_compensation_sees_only_the_steps_that_succeeded() -> None:
    """A refused step's reply is not a result: the undo calls built on resume never see it."""
    ledgers = {n: Ledger(n) for n in "ABC"}
    transport = GatedTransport(ledgers)
    store = MemoryStore()
    engine = SagaEngine(store, transport, [chain_definition()], clock=FakeClock())
    await store.create("s1", "chain", {}, "fp")
    ok = [StepRecord(s, Phase.ACTION, StepStatus.SUCCEEDED, {"from": s}) for s in ("a", "b")]
    refused = StepRecord("c", Phase.ACTION, StepStatus.REFUSED, {"why": "no"}, "C do: no")
    await store.update("s1", steps=[*ok, refused])
    await store.update("s1", status=SagaStatus.COMPENSATING, reason="C do: no")
    [result] = await recover(engine)
    assert result.status is SagaStatus.FAILED
    expected = {"a": {"from": "a"}, "b": {"from": "b"}}
    for key in ("s1:b:compensate", "s1:a:compensate"):
        assert transport.commands[key].payload == {"saga": "s1", "earlier": expected}


async def test_a_saga_failed_by_its_deadline_stays_flagged_when_recovery_finishes_it() -> None:
    engine, _, _, _ = world()
    store = engine.store
    await store.create("s1", "trip", {}, "fp")
    ok = StepRecord("a", Phase.ACTION, StepStatus.SUCCEEDED, {"step": "a"})
    lost = StepRecord("b", Phase.ACTION, StepStatus.UNKNOWN, {}, f"B down; {DEADLINE_MARK}")
    await store.update("s1", steps=[ok, lost])
    await store.update(
        "s1", status=SagaStatus.COMPENSATING, reason=f"B do: unreachable; {DEADLINE_MARK}"
    )
    [result] = await recover(engine)
    record = await store.load("s1")
    assert result.status is SagaStatus.FAILED and record is not None
    assert record.status is SagaStatus.FAILED and record.needs_attention  # someone should look


async def test_two_failed_sagas_count_as_two() -> None:
    engine, _, _, _ = world(refuse={"C": lambda c: True})
    for sid in ("s1", "s2", "s3"):
        await engine.start("trip", sid, {}, "fp")
    stats = engine.stats
    assert (stats.started, stats.confirmed, stats.failed, stats.compensations) == (3, 0, 3, 6)


async def test_recovering_a_compensating_saga_keeps_its_reason_step_and_cause() -> None:
    engine, ledgers, transport, _ = world()
    store = engine.store
    await store.create("s1", "trip", {}, "fp")
    for step in ("a", "b"):
        await ledgers[step.upper()].handle(Command(step.upper(), "do", f"s1:{step}:action", {}))
    ok = [StepRecord(s, Phase.ACTION, StepStatus.SUCCEEDED, {"step": s}) for s in ("a", "b")]
    refused = StepRecord("c", Phase.ACTION, StepStatus.REFUSED, {}, "C do: sold out")
    await store.update("s1", steps=[*ok, refused])
    # The decision was logged (with its reason), then the process died before compensating.
    await store.update("s1", status=SagaStatus.COMPENSATING, reason="C do: sold out")
    [result] = await recover(engine)
    assert result == SagaResult(
        "s1",
        SagaStatus.FAILED,
        "C do: sold out",
        compensations=2,
        fingerprint="fp",
        step="c",
        cause="business",
    )
    record = await store.load("s1")
    assert record is not None and record.reason == "C do: sold out"
    assert compensations_sent(transport) == ["s1:b:compensate", "s1:a:compensate"]
    assert engine.stats.failed == 1 and engine.stats.resumed == 1


async def test_a_run_compensates_a_saga_an_operator_cancelled_under_it() -> None:
    """An operator cancels s1 while b's action is on its way (as ``ordersaga sagas cancel``
    does: compensating, each forward step the log has no outcome of marked unknown). Without a
    lease nothing fences the run off: its decision is refused (the saga is compensating now), it
    reads the log and compensates every step in reverse, c's too. (A worker is fenced off
    instead: tests/integration/distributed.)"""
    engine, ledgers, transport, store = gated_world(refuse_c=False)
    transport.gate("s1:b:action")
    task = asyncio.create_task(engine.start("trip", "s1", {}, "fp"))
    await transport.waiting["s1:b:action"].wait()
    logged = await store.load("s1")
    assert logged is not None
    known = {r.step for r in logged.steps}
    unknown = tuple(
        StepRecord(s, Phase.ACTION, StepStatus.UNKNOWN, {}, CANCELLED_REASON, 0, 0.0, 0.0)
        for s in ("a", "b", "c")
        if s not in known
    )
    change = Repair(
        frozenset({SagaStatus.RUNNING}),
        SagaStatus.COMPENSATING,
        "cancelled by alice",
        None,
        unknown,
    )
    await store.repair("s1", change, OperatorAction("s1", "cancel", "alice"))
    transport.gates["s1:b:action"].set()
    result = await asyncio.wait_for(task, 10)
    assert (result.status, result.reason, result.cause) == (
        SagaStatus.FAILED,
        "cancelled by alice",
        "operator",
    )
    assert compensations_sent(transport) == [
        "s1:c:compensate",
        "s1:b:compensate",
        "s1:a:compensate",
    ]
    assert {ledgers[n].state[f"s1:{n.lower()}"] for n in "ABC"} == {"compensated"}
    record = await store.load("s1")
    assert record is not None and record.status is SagaStatus.FAILED


async def test_a_refused_write_on_a_saga_still_running_in_the_log_is_ownership_lost() -> None:
    """Refused, yet the log neither finished nor cancelled the saga: someone else drives it.
    The run stops (it does not drive the saga again) and says so."""
    engine, _, transport, store = gated_world(refuse_c=False)
    transport.gate("s1:c:action")
    task = asyncio.create_task(engine.start("trip", "s1", {}, "fp"))
    await transport.waiting["s1:c:action"].wait()
    store.refuse = ConflictError("not yours")
    transport.gates["s1:c:action"].set()
    await store.refused.wait()
    store.refuse = None  # only the first write is refused: driving again would go through
    with pytest.raises(OwnershipLost, match="saga 's1': not yours"):
        await asyncio.wait_for(task, 10)
    # The decision (a's and b's results riding with c's) was the refused write: each step was
    # sent once, nothing was confirmed or undone.
    assert list(transport.sent.items()) == [(f"s1:{n}:action", 1) for n in "abc"]
    record = await store.load("s1")
    assert record is not None and record.status is SagaStatus.RUNNING and record.steps == ()


class DownTransport(ScriptedTransport):
    """Service ``B`` cannot be reached (connection refused) until ``clock`` reaches ``until``."""

    def __init__(self, services: dict[str, Ledger], clock: FakeClock, until: float) -> None:
        super().__init__(services)
        self.clock, self.until = clock, until

    async def send(self, command: Command) -> Reply:
        if command.key.endswith(":a:action"):
            await self.clock.sleep(
                30.0
            )  # a slow first step: the deadline still counts from creation
        if command.service == "B" and self.clock.now < self.until:
            self.sent[command.key] += 1
            raise ServiceUnreachable("B: connection refused")
        return await super().send(command)


class RecordingStore(MemoryStore):
    """Keeps what each update wrote: (status, reason, needs_attention, input)."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        super().__init__(clock=clock)
        self.writes: list[tuple[Any, ...]] = []

    async def update(self, saga_id: str, **kwargs: Any) -> None:
        await super().update(saga_id, **kwargs)
        keys = ("status", "reason", "needs_attention", "input")
        self.writes.append(tuple(kwargs.get(k) for k in keys))


async def test_an_outage_holds_a_step_until_the_order_deadline_then_fails_it_flagged() -> None:
    """B is down from the start and back only long after the order's deadline (counted from
    the saga's creation, on the store's clock): the step waits until then, and no further."""
    ledgers = {n: Ledger(n, lambda c: False) for n in "ABC"}
    clock = FakeClock()
    transport = DownTransport(ledgers, clock, until=clock.now + 10_000)
    store = RecordingStore(clock)
    engine = SagaEngine(
        store,
        transport,
        [make_definition()],
        clock=clock,
        rng=random.Random(3),
        settings=EngineSettings(order_deadline=120.0),
    )
    result = await asyncio.wait_for(engine.start("trip", "s1", {}, "fp"), 10)
    assert 120.0 <= clock.now - 1_000.0 < 130.0
    assert (result.status, result.step, result.cause) == (SagaStatus.FAILED, "b", "technical")
    assert "B service unreachable since" in (result.reason or "")
    assert (result.reason or "").endswith(DEADLINE_MARK)
    # B never got the command: only a is undone; the saga stays flagged for attention.
    assert compensations_sent(transport) == ["s1:a:compensate"]
    assert ledgers["A"].state["s1:a"] == "compensated" and "s1:b" not in ledgers["B"].state
    record = await engine.store.load("s1")
    assert record is not None and record.status is SagaStatus.FAILED and record.needs_attention
    step_b = record.step("b")
    assert step_b is not None and step_b.status is StepStatus.UNDELIVERED
    assert engine.stats.needs_attention == 1
    # The decision's write already says why and flags the saga (before any compensation).
    assert store.writes[1] == (SagaStatus.COMPENSATING, result.reason, True, None)
    second = await asyncio.wait_for(engine.start("trip", "s2", {}, "fp"), 10)
    assert second.step == "b" and engine.stats.needs_attention == 2


def _redacted(input: Any) -> Any:
    return {k: v for k, v in input.items() if k != "card"}


@pytest.mark.parametrize("refuse_c", [False, True])
async def test_the_decision_write_erases_what_the_decided_saga_no_longer_needs(
    refuse_c: bool,
) -> None:
    ledgers = {n: Ledger(n, (lambda c: refuse_c) if n == "C" else (lambda c: False)) for n in "ABC"}
    store = RecordingStore()
    definition = dataclasses.replace(make_definition(), redact=_redacted)
    engine = SagaEngine(store, ScriptedTransport(ledgers), [definition], clock=FakeClock())
    result = await engine.start("trip", "s1", {"card": "4111", "x": 1}, "fp")
    assert result.status is (SagaStatus.FAILED if refuse_c else SagaStatus.CONFIRMED)
    decided = SagaStatus.COMPENSATING if refuse_c else SagaStatus.CONFIRMING
    # The decision (a's and b's results riding with it) replaces the input, once.
    assert (store.writes[0][0], store.writes[0][3]) == (decided, {"x": 1})
    assert all(w[3] is None for w in store.writes[1:])
    record = await store.load("s1")
    assert record is not None and record.input == {"x": 1}


async def test_a_saga_decided_without_anything_left_to_do_is_decided_and_ended_in_one_write() -> (
    None
):
    """No retriable step: confirmed at the decision. A first step refused: nothing to undo,
    failed at once (neither passes through confirming or compensating)."""
    C, P = StepKind.COMPENSATABLE, StepKind.PIVOT
    plain = SagaDefinition(
        "plain",
        (
            Step("a", C, builder("A", "do"), builder("A", "undo")),
            Step("c", P, builder("C", "do"), builder("C", "undo")),
        ),
    )
    for refuse_a, status in ((False, SagaStatus.CONFIRMED), (True, SagaStatus.FAILED)):
        ledgers = {
            n: Ledger(n, (lambda c, r=refuse_a: r) if n == "A" else (lambda c: False))
            for n in "ABC"
        }
        store = RecordingStore()
        decided: list[SagaResult] = []
        engine = SagaEngine(store, ScriptedTransport(ledgers), [plain], clock=FakeClock())
        result = await engine.start("plain", "s1", {}, "fp", on_decided=decided.append)
        assert result.status is status and decided == []
        assert [w[0] for w in store.writes] == [status]


async def test_a_saga_another_runner_finished_meanwhile_returns_its_outcome() -> None:
    """A refused write on a saga the log says is finished: the stored outcome is the answer."""
    engine, _, transport, store = gated_world(refuse_c=False)
    transport.gate("s1:b:action")
    task = asyncio.create_task(engine.start("trip", "s1", {}, "fp"))
    await transport.waiting["s1:b:action"].wait()
    change = Repair(frozenset({SagaStatus.RUNNING}), SagaStatus.FAILED, "resolved as failed by bob")
    await store.repair("s1", change, OperatorAction("s1", "resolve failed", "bob", "settled"))
    transport.gates["s1:b:action"].set()
    result = await asyncio.wait_for(task, 10)
    assert (result.status, result.reason) == (SagaStatus.FAILED, "resolved as failed by bob")
    # Its decision was the refused write: nothing was confirmed or undone after it.
    assert [key.rsplit(":", 1)[1] for key in transport.sent] == ["action"] * 3


async def test_a_fenced_engine_on_a_store_without_leases_writes_nothing() -> None:
    """A worker's engine fences every write by its lease; a store without leases holds no saga
    for anyone, so the first write is refused and the run stops there."""
    ledgers = {n: Ledger(n, lambda c: False) for n in "ABC"}
    store = MemoryStore()
    engine = SagaEngine(store, ScriptedTransport(ledgers), [make_definition()], owner="w1")
    with pytest.raises(OwnershipLost, match="not held by 'w1'"):
        await engine.start("trip", "s1", {}, "fp")
    record = await store.load("s1")
    assert record is not None and record.status is SagaStatus.RUNNING and record.steps == ()
