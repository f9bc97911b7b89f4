"""Every definition ``check()`` accepts runs, and keeps the saga invariants whatever happens.

Generated definitions (1-4 compensatable steps, an optional pivot, 0-3 retriable steps, each
retriable step confirming a forward step or standing alone) meet generated trouble: refused
actions, lost requests and responses (enough of them, sometimes, to spend a step's retry budget),
failing status probes, and crashes at any crash point followed by a restart and recovery (up to
three lives). Whatever happened, the saga ends confirmed or failed, and:

* failed: every step that took effect was compensated, compensations were sent in reverse step
  order, nothing was confirmed, and a late duplicate of any action takes no effect;
* confirmed: every forward step took effect, nothing was compensated, every retriable step was
  confirmed;
* no key took effect twice, and when no step's outcome could stay unknown the saga confirms
  exactly when no forward step is refused.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from hypothesis import event, given, settings
from hypothesis import strategies as st

from ordersaga.protocol.messages import Command, Phase, make_key, parse_key
from ordersaga.saga.crash import NO_CRASH, CrashPoints
from ordersaga.saga.definition import Invocation, SagaContext, SagaDefinition, Step, StepKind
from ordersaga.saga.executor import SagaEngine, SagaResult
from ordersaga.saga.recovery import recover
from ordersaga.saga.retry import ACTION_POLICY
from ordersaga.saga.store.base import SagaStatus
from ordersaga.saga.store.memory import MemoryStore
from ordersaga.saga.testing import (
    FakeClock,
    Ledger,
    RaisingCrashPoints,
    ScriptedTransport,
    SimulatedCrash,
)

SAGA_ID = "trip-1"
#: Enough lost requests in a row to spend a forward step's whole retry budget.
BUDGET = ACTION_POLICY.maximum_attempts or 10


@dataclass(frozen=True)
class Scenario:
    compensatable: int
    pivot: bool
    #: One entry per retriable step: the forward step it confirms, or None (stand-alone).
    retriable: tuple[str | None, ...]
    refused: frozenset[str]
    #: (step, phase) -> how the first attempts of that call go wrong.
    faults: dict[tuple[str, str], tuple[str | None, ...]]
    probe_fails: bool
    #: Per life, the crash-point hit at which that life dies (a restart follows).
    crashes: tuple[int, ...]

    @property
    def forward(self) -> list[str]:
        names = [f"c{i}" for i in range(self.compensatable)]
        return [*names, "pivot"] if self.pivot else names

    def definition(self) -> SagaDefinition:
        forward = self.forward
        steps = [
            Step(
                name,
                StepKind.PIVOT if name == "pivot" else StepKind.COMPENSATABLE,
                _call(name, "do"),
                _call(name, "undo"),
            )
            for name in forward
        ]
        for i, confirms in enumerate(self.retriable):
            service = confirms or f"r{i}"
            steps.append(Step(f"r{i}", StepKind.RETRIABLE, _call(service, "ok"), confirms=confirms))
        return SagaDefinition("generated", tuple(steps))

    def services(self) -> list[str]:
        return [*self.forward, *(c or f"r{i}" for i, c in enumerate(self.retriable))]


def _call(service: str, action: str) -> Callable[[SagaContext], Invocation]:
    def build(ctx: SagaContext) -> Invocation:
        return Invocation(service, action, {"saga": ctx.saga_id, "seen": sorted(ctx.results)})

    return build


FAULT = st.sampled_from([None, "request", "response"])


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    compensatable = draw(st.integers(1, 4))
    pivot = draw(st.booleans())
    forward = [f"c{i}" for i in range(compensatable)] + (["pivot"] if pivot else [])
    retriable: list[str | None] = []
    for _ in range(draw(st.integers(0, 3))):
        free = [name for name in forward if name not in retriable]
        retriable.append(draw(st.sampled_from([None, *free])))
    refused = draw(st.frozensets(st.sampled_from(forward), max_size=2))
    faults: dict[tuple[str, str], tuple[str | None, ...]] = {}
    calls = [(n, p) for n in forward for p in ("action", "compensate")]
    calls += [(f"r{i}", "confirm") for i in range(len(retriable))]
    for call in draw(st.lists(st.sampled_from(calls), max_size=4, unique=True)):
        if call[1] == "action" and draw(st.integers(0, 4)) == 0:
            # The whole budget: unless a probe answers, the outcome stays unknown (the step
            # was applied when only the responses were lost).
            faults[call] = (draw(st.sampled_from(["request", "response"])),) * BUDGET
        else:
            faults[call] = tuple(draw(st.lists(FAULT, min_size=1, max_size=6)))
    crashes = tuple(draw(st.lists(st.integers(1, 45), max_size=3)))
    return Scenario(
        compensatable, pivot, tuple(retriable), refused, faults, draw(st.booleans()), crashes
    )


@dataclass
class Played:
    result: SagaResult
    transport: ScriptedTransport
    ledgers: dict[str, Ledger]
    store: MemoryStore
    lives: int


async def play(scenario: Scenario) -> Played:
    definition = scenario.definition()
    refused = scenario.refused
    ledgers = {
        name: Ledger(name, lambda c: parse_key(c.key)[1] in refused) for name in scenario.services()
    }
    attempts: Counter[tuple[str, str]] = Counter()

    def fail(command: Command) -> str | None:
        _, step, phase = parse_key(command.key)
        call = (step, phase.value)
        if phase is Phase.CONFIRM:  # a confirmer's key names the step it confirms
            call = next(
                (f"r{i}", "confirm")
                for i, c in enumerate(scenario.retriable)
                if (c or f"r{i}") == step
            )
        script = scenario.faults.get(call, ())
        n = attempts[call]
        attempts[call] += 1
        return script[n] if n < len(script) else None

    transport = ScriptedTransport(ledgers, fail, scenario.probe_fails)
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    result: SagaResult | None = None
    lives = 0
    for life in range(len(scenario.crashes) + 1):
        lives += 1
        crash: CrashPoints = NO_CRASH
        if life < len(scenario.crashes):
            crash = RaisingCrashPoints("*", scenario.crashes[life])
        engine = SagaEngine(
            store, transport, [definition], clock=clock, rng=random.Random(life), crash=crash
        )
        try:
            await recover(engine)  # what a restarted process does first
            result = await engine.start("generated", SAGA_ID, {"trip": 1}, "fp")
        except SimulatedCrash:
            continue
        break
    assert result is not None
    return Played(result, transport, ledgers, store, lives)


def _key(step: str, phase: Phase) -> str:
    return make_key(SAGA_ID, step, phase)


async def check_invariants(scenario: Scenario) -> str:
    played = await play(scenario)
    record = await played.store.load(SAGA_ID)
    assert record is not None
    assert record.status in (SagaStatus.CONFIRMED, SagaStatus.FAILED), record.status
    assert played.result.status is record.status and not record.needs_attention
    assert await played.store.unfinished() == []

    effects: Counter[str] = Counter()
    for ledger in played.ledgers.values():
        effects.update(ledger.effects)
    assert all(n == 1 for n in effects.values()), effects  # no key took effect twice

    forward = scenario.forward
    sent = played.transport.log
    applied = [s for s in forward if effects[_key(s, Phase.ACTION)]]
    compensations = [parse_key(k)[1] for k in dict.fromkeys(sent) if k.endswith(":compensate")]
    confirmations = [k for k in sent if k.endswith(":confirm")]
    if record.status is SagaStatus.FAILED:
        assert confirmations == []
        for step in applied:
            assert played.ledgers[step].state[f"{SAGA_ID}:{step}"] == "compensated", step
        order = {name: i for i, name in enumerate(forward)}
        assert compensations == sorted(compensations, key=order.__getitem__, reverse=True)
        for step in forward:  # a late duplicate of any action sent finds a tombstone or a refusal
            if _key(step, Phase.ACTION) not in played.transport.sent:
                continue
            late = Command(step, "do", _key(step, Phase.ACTION), {})
            await played.ledgers[step].handle(late)
            assert played.ledgers[step].state.get(f"{SAGA_ID}:{step}") != "applied", step
    else:
        assert applied == forward and compensations == []
        for i, confirms in enumerate(scenario.retriable):
            resource = confirms or f"r{i}"
            assert effects[_key(resource, Phase.CONFIRM)] == 1
            assert played.ledgers[resource].state[f"{SAGA_ID}:{resource}"] == "confirmed"

    may_stay_unknown = any(len(f) >= BUDGET for f in scenario.faults.values())
    if not may_stay_unknown:
        expected = SagaStatus.FAILED if scenario.refused else SagaStatus.CONFIRMED
        assert record.status is expected
    return f"{record.status.value} after {played.lives} lives, {len(compensations)} compensated"


@settings(max_examples=500, deadline=None)
@given(scenarios())
def test_every_checked_definition_runs_and_keeps_the_saga_invariants(scenario: Scenario) -> None:
    event(asyncio.run(check_invariants(scenario)))


def test_a_definition_that_ends_at_its_pivot_confirms() -> None:
    scenario = Scenario(2, True, (), frozenset(), {}, False, ())
    asyncio.run(check_invariants(scenario))


def test_a_definition_without_pivot_or_retriable_steps_confirms() -> None:
    scenario = Scenario(1, False, (), frozenset(), {}, False, ())
    asyncio.run(check_invariants(scenario))


def test_a_pivotless_definition_compensates_when_its_last_step_is_refused() -> None:
    scenario = Scenario(3, False, (None,), frozenset({"c2"}), {}, False, ())
    asyncio.run(check_invariants(scenario))
