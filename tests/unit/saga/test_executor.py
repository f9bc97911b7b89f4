import asyncio
import dataclasses
import random
from collections.abc import Callable
from typing import Any

import pytest

from ordersaga.errors import ConfigError
from ordersaga.protocol.messages import Command, Phase, Reply
from ordersaga.saga.definition import Invocation, SagaContext, SagaDefinition, Step, StepKind
from ordersaga.saga.executor import MISMATCH_REASON, EngineSettings, SagaEngine, SagaResult
from ordersaga.saga.recovery import recover
from ordersaga.saga.store.base import SagaRecord, SagaStatus, StepRecord, StepStatus
from ordersaga.saga.store.memory import MemoryStore
from ordersaga.saga.testing import FakeClock

from .fakes import Ledger, ScriptedTransport


def builder(service: str, action: str) -> Callable[[SagaContext], Invocation]:
    return lambda ctx: Invocation(service, action, {"input": dict(ctx.input)})


def make_definition() -> SagaDefinition:
    C, P, R = StepKind.COMPENSATABLE, StepKind.PIVOT, StepKind.RETRIABLE
    return SagaDefinition(
        "trip",
        (
            Step("a", C, builder("A", "do"), builder("A", "undo")),
            Step("b", C, builder("B", "do"), builder("B", "undo")),
            Step("c", P, builder("C", "do"), builder("C", "undo")),
            Step("a_ok", R, builder("A", "confirm"), confirms="a"),
            Step("c_ok", R, builder("C", "confirm"), confirms="c"),
        ),
    )


def world(
    refuse: dict[str, Callable[[Command], bool]] | None = None,
    fail: Callable[[Command], str | None] = lambda c: None,
    probe_fails: bool = False,
    store: MemoryStore | None = None,
) -> tuple[SagaEngine, dict[str, Ledger], ScriptedTransport, FakeClock]:
    refuse = refuse or {}
    ledgers = {n: Ledger(n, refuse.get(n, lambda c: False)) for n in "ABC"}
    transport = ScriptedTransport(ledgers, fail, probe_fails)
    clock = FakeClock()
    engine = SagaEngine(
        store or MemoryStore(), transport, [make_definition()], clock=clock, rng=random.Random(3)
    )
    return engine, ledgers, transport, clock


def compensations_sent(transport: ScriptedTransport) -> list[str]:
    """The compensation keys in the order they were first sent (a Counter keeps that order)."""
    return [key for key in transport.sent if key.endswith(":compensate")]


async def test_happy_path_confirms_and_logs_each_phase() -> None:
    engine, ledgers, transport, _ = world()
    result = await engine.start("trip", "s1", {"x": 1}, "fp1")
    assert result.status is SagaStatus.CONFIRMED and result.retries == 0
    assert ledgers["A"].state == {"s1:a": "confirmed"}
    assert ledgers["B"].state == {"s1:b": "applied"}
    assert ledgers["C"].state == {"s1:c": "confirmed"}
    record = await engine.store.load("s1")
    assert record is not None and record.status is SagaStatus.CONFIRMED
    assert {(r.step, r.phase) for r in record.steps} == {
        ("a", Phase.ACTION),
        ("b", Phase.ACTION),
        ("c", Phase.ACTION),
        ("a_ok", Phase.CONFIRM),
        ("c_ok", Phase.CONFIRM),
    }
    assert all(n == 1 for n in transport.sent.values())


async def test_refusal_compensates_earlier_steps_in_reverse_but_not_itself() -> None:
    engine, ledgers, transport, _ = world(refuse={"C": lambda c: True})
    result = await engine.start("trip", "s1", {}, "fp")
    assert result.status is SagaStatus.FAILED
    assert result.reason is not None and "no" in result.reason
    assert result.compensations == 2
    assert ledgers["A"].state["s1:a"] == "compensated"
    assert ledgers["B"].state["s1:b"] == "compensated"
    # The last step that took effect is undone first: b, then a.
    assert compensations_sent(transport) == ["s1:b:compensate", "s1:a:compensate"]
    assert "s1:c:compensate" not in transport.sent  # a refusal is never compensated
    assert transport.sent["s1:c:action"] == 1  # ... nor retried


async def test_refusal_at_first_step_fails_without_compensation() -> None:
    engine, _, transport, _ = world(refuse={"A": lambda c: True})
    result = await engine.start("trip", "s1", {}, "fp")
    assert result.status is SagaStatus.FAILED and result.compensations == 0
    assert set(transport.sent) == {"s1:a:action"}


async def test_lost_messages_are_retried_under_the_same_key_and_take_effect_once() -> None:
    rng = random.Random(5)
    engine, ledgers, _, clock = world(
        fail=lambda c: rng.choice([None, None, "request", "response"])
    )
    for i in range(30):
        result = await engine.start("trip", f"s{i}", {}, "fp")
        assert result.status is SagaStatus.CONFIRMED
    assert sum(len(lg.effects) for lg in ledgers.values()) == 30 * 5
    assert all(n == 1 for lg in ledgers.values() for n in lg.effects.values())
    assert engine.caller.stats.retries > 0 and clock.sleeps  # backoff happened, without waiting


async def test_applied_but_unanswered_step_is_settled_by_the_probe() -> None:
    engine, ledgers, _, _ = world(fail=lambda c: "response" if c.key == "s1:b:action" else None)
    result = await engine.start("trip", "s1", {}, "fp")
    assert result.status is SagaStatus.CONFIRMED
    assert engine.caller.stats.probes >= 1
    assert ledgers["B"].effects["s1:b:action"] == 1


async def test_unknown_outcome_is_compensated_too_and_the_tombstone_stops_a_late_arrival() -> None:
    engine, ledgers, transport, _ = world(
        fail=lambda c: "request" if c.key == "s1:b:action" else None, probe_fails=True
    )
    result = await engine.start("trip", "s1", {}, "fp")
    assert result.status is SagaStatus.FAILED and "unknown" in (result.reason or "")
    assert transport.sent["s1:b:compensate"] == 1
    # The step whose outcome is unknown is undone first, then the one before it.
    assert compensations_sent(transport) == ["s1:b:compensate", "s1:a:compensate"]
    record = await engine.store.load("s1")
    assert record is not None
    step_b = record.step("b")
    assert step_b is not None and step_b.status is StepStatus.UNKNOWN
    late = await ledgers["B"].handle(Command("B", "do", "s1:b:action", {"input": {}}))
    assert not late.ok and ledgers["B"].state["s1:b"] == "compensated"


async def test_same_id_same_input_replays_and_other_input_is_a_mismatch() -> None:
    engine, _, transport, _ = world()
    first = await engine.start("trip", "s1", {"x": 1}, "fp1")
    sent = sum(transport.sent.values())
    again = await engine.start("trip", "s1", {"x": 1}, "fp1")
    other = await engine.start("trip", "s1", {"x": 2}, "fp2")
    assert again.replayed and again.status is first.status
    assert other.mismatch and other.status is SagaStatus.FAILED and other.reason == MISMATCH_REASON
    assert sum(transport.sent.values()) == sent  # nothing executed again


async def test_concurrent_starts_of_one_id_run_it_once() -> None:
    engine, ledgers, _, _ = world()
    results = await asyncio.gather(*(engine.start("trip", "s1", {}, "fp") for _ in range(5)))
    assert [r.status for r in results] == [SagaStatus.CONFIRMED] * 5
    assert sum(r.replayed for r in results) == 4
    assert all(n == 1 for lg in ledgers.values() for n in lg.effects.values())


@pytest.mark.parametrize("refused", [False, True])
async def test_a_start_during_the_run_waits_and_gets_its_outcome_or_a_mismatch(
    refused: bool,
) -> None:
    engine, ledgers, _, _ = world(refuse={"C": lambda c: refused})
    first, same, other = await asyncio.gather(
        engine.start("trip", "s1", {}, "fp"),
        engine.start("trip", "s1", {}, "fp"),
        engine.start("trip", "s1", {"x": 2}, "other"),
    )
    assert first.status is (SagaStatus.FAILED if refused else SagaStatus.CONFIRMED)
    assert not first.replayed and first.fingerprint == "fp"
    # What the waiting request gets: the outcome, marked replayed, nothing executed for it.
    assert same == dataclasses.replace(first, replayed=True)
    assert (same.status, same.reason, same.fingerprint) == (first.status, first.reason, "fp")
    assert other == SagaResult(
        "s1", SagaStatus.FAILED, MISMATCH_REASON, mismatch=True, cause="input"
    )
    assert all(n == 1 for lg in ledgers.values() for n in lg.effects.values())


async def test_a_resume_during_the_run_waits_for_it() -> None:
    engine, _, transport, _ = world()
    record, _ = await engine.store.create("s1", "trip", {}, "fp")
    other, _ = await engine.store.create("s2", "trip", {}, "fp")
    results = await asyncio.gather(
        engine.resume(record), engine.resume(record), engine.resume(other)
    )
    assert results[0] == results[1] and results[0].status is SagaStatus.CONFIRMED
    assert results[2].saga_id == "s2" and results[2].status is SagaStatus.CONFIRMED
    assert engine.stats.resumed == 2  # the second resume of s1 found it running and waited
    assert all(n == 1 for n in transport.sent.values())


@pytest.mark.parametrize("status", [SagaStatus.RUNNING, SagaStatus.COMPENSATING])
async def test_recovery_finishes_unfinished_sagas_and_is_harmless_twice(
    status: SagaStatus,
) -> None:
    engine, ledgers, transport, _ = world(refuse={"C": lambda c: status is SagaStatus.COMPENSATING})
    store = engine.store
    await store.create("s1", "trip", {}, "fp")
    # Simulate a crash after step a was applied but before its result was logged.
    await ledgers["A"].handle(Command("A", "do", "s1:a:action", {"input": {}}))
    results = await recover(engine)
    again = await recover(engine)
    assert [r.saga_id for r in results] == ["s1"] and again == []
    record = await store.load("s1")
    assert record is not None and record.status.terminal
    assert all(n == 1 for lg in ledgers.values() for n in lg.effects.values())
    undone = ["s1:b:compensate", "s1:a:compensate"] if status is SagaStatus.COMPENSATING else []
    assert compensations_sent(transport) == undone


async def test_confirmations_retry_until_they_succeed() -> None:
    failures = {"n": 0}

    def fail(c: Command) -> str | None:
        if c.key == "s1:c:confirm" and failures["n"] < 40:
            failures["n"] += 1
            return "request"
        return None

    engine, ledgers, _, _ = world(fail=fail)
    result = await engine.start("trip", "s1", {}, "fp")
    assert result.status is SagaStatus.CONFIRMED and result.retries == 40
    assert ledgers["C"].state["s1:c"] == "confirmed"


async def test_on_decided_reports_the_confirmation_before_the_confirmations_run() -> None:
    engine, ledgers, _, _ = world()
    seen: list[tuple[SagaStatus, str]] = []

    def decided(result: SagaResult) -> None:
        # The decision is durable, the confirmations have not run yet.
        seen.append((result.status, ledgers["A"].state["s1:a"]))

    result = await engine.start("trip", "s1", {}, "fp", on_decided=decided)
    assert seen == [(SagaStatus.CONFIRMING, "applied")]
    record = await engine.store.load("s1")
    assert record is not None and record.status is SagaStatus.CONFIRMED
    assert result.status is SagaStatus.CONFIRMED and ledgers["A"].state["s1:a"] == "confirmed"


async def test_on_decided_is_not_called_for_a_failed_saga() -> None:
    engine, _, transport, _ = world(refuse={"C": lambda c: True})
    seen: list[SagaResult] = []
    result = await engine.start("trip", "s1", {}, "fp", on_decided=seen.append)
    assert result.status is SagaStatus.FAILED and result.compensations == 2 and seen == []
    assert compensations_sent(transport) == ["s1:b:compensate", "s1:a:compensate"]


async def test_a_decided_saga_replays_field_by_field() -> None:
    engine, _, _, _ = world(refuse={"C": lambda c: True})
    first = await engine.start("trip", "s1", {}, "fp")
    again = await engine.start("trip", "s1", {}, "fp")
    other = await engine.start("trip", "s1", {"x": 2}, "other")
    assert first.reason is not None
    assert again == SagaResult(
        "s1",
        SagaStatus.FAILED,
        first.reason,
        compensations=2,  # the original saga's, not this replay's zero
        replayed=True,
        fingerprint="fp",
        step="c",
        cause="business",
    )
    assert other == SagaResult(
        "s1", SagaStatus.FAILED, MISMATCH_REASON, mismatch=True, cause="input"
    )


async def test_a_start_finishes_a_saga_left_unfinished_in_the_log() -> None:
    """An id the log shows unfinished (a crash before recovery ran): a new start finishes it."""
    engine, ledgers, transport, _ = world(refuse={"C": lambda c: c.key.startswith("s2:")})
    for saga_id in ("s1", "s2"):
        await engine.store.create(saga_id, "trip", {}, "fp")
    results = [await engine.start("trip", sid, {}, "fp") for sid in ("s1", "s2")]
    failed = await engine.store.load("s2")
    assert failed is not None and failed.reason is not None
    assert results == [
        SagaResult("s1", SagaStatus.CONFIRMED, None, replayed=True, fingerprint="fp"),
        SagaResult(
            "s2",
            SagaStatus.FAILED,
            failed.reason,
            compensations=2,
            replayed=True,
            fingerprint="fp",
            step="c",
            cause="business",
        ),
    ]
    assert engine.stats.resumed == 2 and engine.stats.started == 0
    assert ledgers["C"].state == {"s1:c": "confirmed"}
    assert all(n == 1 for n in transport.sent.values())


class YieldingStore(MemoryStore):
    """A memory store whose create lets other tasks run first, as a real store's I/O does."""

    async def create(self, *args: Any, **kwargs: Any) -> tuple[SagaRecord, bool]:
        await asyncio.sleep(0)
        return await super().create(*args, **kwargs)


async def test_record_failed_logs_a_saga_decided_without_steps_once() -> None:
    # A store that yields in create, so that the second call finds the first one running.
    engine, _, transport, _ = world(store=YieldingStore())
    first, concurrent = await asyncio.gather(
        engine.record_failed("trip", "s1", {}, "fp", "bad input"),
        engine.record_failed("trip", "s1", {}, "fp", "bad input"),
    )
    assert first == SagaResult(
        "s1", SagaStatus.FAILED, "bad input", fingerprint="fp", cause="input"
    )
    replay = dataclasses.replace(first, replayed=True)
    assert concurrent == replay
    assert await engine.record_failed("trip", "s1", {}, "fp", "bad input") == replay
    other = await engine.record_failed("trip", "s1", {}, "other", "bad input")
    assert other == SagaResult(
        "s1", SagaStatus.FAILED, MISMATCH_REASON, mismatch=True, cause="input"
    )
    await engine.record_failed("trip", "s2", {}, "fp", "bad too")
    assert engine.stats.failed == 2 and not transport.sent
    record = await engine.store.load("s1")
    assert record is not None and record.status is SagaStatus.FAILED
    assert record.reason == "bad input" and record.steps == ()


async def test_a_refused_compensation_flags_the_saga_and_leaves_it_compensating() -> None:
    engine, ledgers, transport, _ = world(refuse={"C": lambda c: True})
    for sid in ("s1", "s2"):  # b refuses its compensation (a stored refusal for the key)
        ledgers["B"].replies[f"{sid}:b:compensate"] = Reply.refused("cannot undo")
    results = [await engine.start("trip", sid, {}, "fp") for sid in ("s1", "s2")]
    assert [r.status for r in results] == [SagaStatus.COMPENSATING] * 2
    assert engine.stats.needs_attention == 2  # once per saga
    record = await engine.store.load("s1")
    assert record is not None and record.status is SagaStatus.COMPENSATING
    assert record.needs_attention
    # Undoing stopped at b, the last step: a, before it, was not compensated.
    assert compensations_sent(transport) == ["s1:b:compensate", "s2:b:compensate"]
    assert ledgers["A"].state["s1:a"] == "applied"


async def test_the_engine_counts_what_it_did() -> None:
    engine, _, _, _ = world(refuse={"C": lambda c: c.key.startswith("s2:")})
    for sid in ("s1", "s2", "s3"):
        await engine.start("trip", sid, {}, "fp")
    await engine.start("trip", "s1", {}, "fp")  # a replay counts as nothing
    stats = engine.stats
    assert (stats.started, stats.confirmed, stats.failed) == (3, 2, 1)
    assert stats.compensations == 2 and stats.resumed == 0 and stats.needs_attention == 0


async def test_the_log_keeps_each_steps_outcome_and_the_reason() -> None:
    def fail(c: Command) -> str | None:  # b's action is lost twice before it gets through
        return "request" if c.key == "s1:b:action" and transport.sent[c.key] <= 2 else None

    engine, _, transport, clock = world(refuse={"C": lambda c: True}, fail=fail)
    result = await engine.start("trip", "s1", {}, "fp")
    record = await engine.store.load("s1")
    assert record is not None and record.status is SagaStatus.FAILED
    assert result.reason is not None and record.reason == result.reason
    refused = record.step("c")
    assert refused is not None and refused.status is StepStatus.REFUSED
    assert (refused.reason, refused.attempts) == ("C do: no", 1)
    retried = record.step("b")
    assert retried is not None and retried.attempts == 3 and retried.reason is None
    assert retried.started_at < retried.ended_at <= clock.time()  # the backoff in between
    undone = record.step("b", Phase.COMPENSATE)
    assert undone is not None and undone.status is StepStatus.SUCCEEDED


def lost_twice(
    *keys: str, sent: Callable[[], ScriptedTransport]
) -> Callable[[Command], str | None]:
    """A fault script: the first two attempts of each of ``keys`` are lost."""
    return lambda c: "request" if c.key in keys and sent().sent[c.key] <= 2 else None


@pytest.mark.parametrize("refused", [True, False])
async def test_a_slow_undo_or_confirmation_flags_the_saga_until_it_ends(refused: bool) -> None:
    """Flagged once (however many calls are slow), and no longer flagged once finished."""
    phase = "compensate" if refused else "confirm"
    keys = (f"s1:a:{phase}", f"s1:{'b' if refused else 'c'}:{phase}")
    engine, _, transport, _ = world(
        refuse={"C": lambda c: refused}, fail=lost_twice(*keys, sent=lambda: transport)
    )
    engine = SagaEngine(
        engine.store,
        transport,
        [make_definition()],
        clock=FakeClock(),
        rng=random.Random(3),
        settings=EngineSettings(attention_after=0.0),
    )
    result = await engine.start("trip", "s1", {}, "fp")
    assert result.status is (SagaStatus.FAILED if refused else SagaStatus.CONFIRMED)
    assert all(transport.sent[key] == 3 for key in keys)
    assert engine.stats.needs_attention == 1  # two slow calls, one flag
    record = await engine.store.load("s1")
    assert record is not None and record.status is result.status
    assert not record.needs_attention


async def test_a_refused_confirmation_flags_the_saga_and_leaves_it_confirming() -> None:
    engine, ledgers, _, _ = world()
    ledgers["A"].replies["s1:a:confirm"] = Reply.refused("cannot confirm")
    result = await engine.start("trip", "s1", {}, "fp")
    assert result.status is SagaStatus.CONFIRMING and engine.stats.needs_attention == 1
    record = await engine.store.load("s1")
    assert record is not None and record.status is SagaStatus.CONFIRMING
    assert record.needs_attention


async def test_recovery_does_not_resend_a_step_whose_result_is_logged() -> None:
    engine, ledgers, transport, _ = world()
    await engine.store.create("s1", "trip", {}, "fp")
    # A crash after a was applied and its result logged, before b was sent.
    await ledgers["A"].handle(Command("A", "do", "s1:a:action", {"input": {}}))
    done = StepRecord("a", Phase.ACTION, StepStatus.SUCCEEDED, {"step": "a"})
    await engine.store.update("s1", steps=[done])
    [result] = await recover(engine)
    assert result.status is SagaStatus.CONFIRMED
    assert "s1:a:action" not in transport.sent and transport.sent["s1:b:action"] == 1


async def test_an_unknown_definition_is_a_config_error() -> None:
    engine, _, _, _ = world()
    with pytest.raises(ConfigError, match="no saga definition named 'nope'"):
        await engine.start("nope", "s1", {}, "fp")


async def test_intermediate_results_ride_in_the_decision_write() -> None:
    engine, _, _, _ = world()
    result = await engine.start("trip", "s1", {}, "fp")
    assert result.status is SagaStatus.CONFIRMED
    assert engine.store.stats.writes == 3  # create, decision (a, b, c), end (a_ok, c_ok)


async def test_a_refusal_decides_with_the_held_results_so_they_are_undone() -> None:
    engine, _, transport, _ = world(refuse={"C": lambda c: True})
    result = await engine.start("trip", "s1", {}, "fp")
    assert result.status is SagaStatus.FAILED and engine.store.stats.writes == 3
    record = await engine.store.load("s1")
    assert record is not None
    actions = {r.step: r.status for r in record.steps if r.phase is Phase.ACTION}
    assert actions == {
        "a": StepStatus.SUCCEEDED,
        "b": StepStatus.SUCCEEDED,
        "c": StepStatus.REFUSED,
    }
    assert compensations_sent(transport) == ["s1:b:compensate", "s1:a:compensate"]


async def test_recovery_resends_the_steps_held_for_a_decision_never_written() -> None:
    engine, ledgers, transport, _ = world()
    await engine.store.create("s1", "trip", {}, "fp")
    # A crash after a and b were applied, their results held for the decision's write.
    for service, key in (("A", "s1:a:action"), ("B", "s1:b:action")):
        await ledgers[service].handle(Command(service, "do", key, {"input": {}}))
    [result] = await recover(engine)
    assert result.status is SagaStatus.CONFIRMED
    assert transport.sent["s1:a:action"] == 1 and transport.sent["s1:b:action"] == 1
    assert ledgers["A"].state == {"s1:a": "confirmed"} and ledgers["B"].state == {"s1:b": "applied"}


async def test_a_step_that_must_retry_first_logs_the_held_results() -> None:
    lost: list[str] = []

    def lose_b_once(command: Command) -> str | None:
        if command.key == "s1:b:action" and not lost:
            lost.append(command.key)
            return "request"
        return None

    engine, _, _, _ = world(fail=lose_b_once)
    seen: list[tuple[str, ...]] = []
    store = engine.store
    update = store.update

    async def spying(saga_id: str, **kw: Any) -> Any:
        seen.append(tuple(r.step for r in kw["steps"]))
        return await update(saga_id, **kw)

    store.update = spying  # type: ignore[method-assign]
    result = await engine.start("trip", "s1", {}, "fp")
    assert result.status is SagaStatus.CONFIRMED and result.retries == 1
    # a's result is written when b must retry (where the saga waits shows in the log), then b
    # and c ride in the decision.
    assert seen == [("a",), ("b", "c"), ("a_ok", "c_ok")]
