"""The engine's hot paths keep their meaning: the per-order values built on slot twins
(``ordersaga.slots``) are the very values their public constructors make (same type, eq, hash,
repr, replace, pickling, immutability), and the creation's crash points stay around it."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import gc
import pickle
import random
from typing import Any

import pytest

from ordersaga.local.pipeline import Outcome, _build_outcome
from ordersaga.protocol.messages import Command, Probe, Reply
from ordersaga.saga.crash import CrashPoints
from ordersaga.saga.definition import (
    Invocation,
    SagaContext,
    SagaDefinition,
    Step,
    StepKind,
    invocation,
    saga_context,
)
from ordersaga.saga.executor import SagaEngine
from ordersaga.saga.result import SagaResult, build_saga_result
from ordersaga.saga.store.base import SagaStatus
from ordersaga.saga.store.memory import MemoryStore
from ordersaga.saga.testing import FakeClock
from ordersaga.slots import slot_twin
from ordersaga.transport.base import Transport

RESULT_ARGS = ("s1", SagaStatus.FAILED, "why", 2, 1, False, True, "f" * 64, "pay", "business")
OUTCOME_ARGS = (7, "o-7", False, "refused", 2, 1, True, 0.25, "pay", "business")


def same_value(built: Any, made: Any) -> None:
    assert type(built) is type(made)
    assert built == made and made == built
    assert repr(built) == repr(made)
    assert dataclasses.astuple(built) == dataclasses.astuple(made)
    assert copy.copy(built) == made
    assert pickle.loads(pickle.dumps(built)) == made
    fields = dataclasses.fields(made)
    # Every field given, in order (a new field must reach the builder too).
    assert [getattr(built, f.name) for f in fields] == [getattr(made, f.name) for f in fields]
    name = fields[0].name
    assert dataclasses.replace(built, **{name: "x"}) == dataclasses.replace(made, **{name: "x"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(built, name, "x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        delattr(built, name)


@pytest.mark.parametrize(
    ("built", "made"),
    [
        (build_saga_result(*RESULT_ARGS), SagaResult(*RESULT_ARGS)),
        (_build_outcome(*OUTCOME_ARGS), Outcome(*OUTCOME_ARGS)),
        (invocation("svc", "act", {"n": 1}), Invocation("svc", "act", {"n": 1})),
        (saga_context("s1", {"x": 1}, {"a": {}}), SagaContext("s1", {"x": 1}, {"a": {}})),
    ],
    ids=["SagaResult", "Outcome", "Invocation", "SagaContext"],
)
def test_built_values_are_the_constructed_ones(built: Any, made: Any) -> None:
    same_value(built, made)


def test_built_values_hash_like_the_constructed_ones() -> None:
    built, made = build_saga_result(*RESULT_ARGS), SagaResult(*RESULT_ARGS)
    assert hash(built) == hash(made) and {built: 1}[made] == 1
    assert hash(_build_outcome(*OUTCOME_ARGS)) == hash(Outcome(*OUTCOME_ARGS))


def test_a_twin_has_the_slots_and_nothing_else() -> None:
    twin = slot_twin(SagaResult)
    assert twin.__slots__ == SagaResult.__slots__ and twin.__bases__ == (object,)
    assert not hasattr(twin(), "__dict__")


class _Recording(Transport):
    """Answers every command ok, keeping what was sent."""

    def __init__(self) -> None:
        self.commands: list[Command] = []

    async def send(self, command: Command) -> Reply:
        self.commands.append(command)
        return Reply.from_json({"status": "ok", "body": {"n": len(self.commands)}})

    async def probe(self, service: str, key: str) -> Probe:  # pragma: no cover - never asked
        raise AssertionError("no probe expected")


async def test_a_step_calls_command_is_a_plain_command() -> None:
    transport = _Recording()
    clock = FakeClock(5_000.0)

    def build(ctx: Any) -> Invocation:
        return invocation("svc", "do", {"input": dict(ctx.input)})

    steps = (Step("a", StepKind.PIVOT, build, build),)
    engine = SagaEngine(
        MemoryStore(), transport, [SagaDefinition("one", steps)], clock=clock, rng=random.Random(1)
    )
    result = await engine.start("one", "s1", {"x": 1}, "fp")
    assert result.status is SagaStatus.CONFIRMED
    (command,) = transport.commands
    same_value(command, Command("svc", "do", "s1:a:action", {"input": {"x": 1}}, 5_000.0))


async def test_armed_points_around_the_creation_are_hit_in_order() -> None:
    # Disarmed, the creation is the store's own coroutine; armed, the points come around it.
    store = MemoryStore()
    seen: list[tuple[str, bool]] = []

    class Seen(CrashPoints):
        def hit(self, name: str) -> None:
            seen.append((name, "s1" in store._sagas))  # what the log held at the point

    def build(ctx: Any) -> Invocation:
        return invocation("svc", "do", {})

    steps = (Step("a", StepKind.PIVOT, build, build),)
    engine = SagaEngine(
        store, _Recording(), [SagaDefinition("one", steps)], clock=FakeClock(), crash=Seen()
    )
    result = await engine.start("one", "s1", {"x": 1}, "fp")
    assert result.status is SagaStatus.CONFIRMED
    assert seen[:3] == [
        ("log.before:create", False),
        ("log.after:create", True),
        ("saga.created", True),
    ]


async def test_shielded_work_hands_over_as_asyncio_shield_does() -> None:
    from ordersaga.saga.driver import _shielded

    async def work(outcome: Any, gate: asyncio.Event | None = None) -> Any:
        if gate is not None:
            await gate.wait()
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    assert await _shielded(work(SagaStatus.CONFIRMED)) is SagaStatus.CONFIRMED
    with pytest.raises(RuntimeError, match="log down"):
        await _shielded(work(RuntimeError("log down")))

    # A cancelled caller leaves the work running; its later error is retrieved (not reported).
    seen: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: seen.append(context))
    gate = asyncio.Event()
    inner: list[asyncio.Task[Any]] = []

    async def caller() -> Any:
        coro = work(RuntimeError("fenced"), gate)
        future = _shielded(coro)
        inner.extend(t for t in asyncio.all_tasks() if t.get_coro() is coro)
        return await future

    outer = asyncio.create_task(caller())
    await asyncio.sleep(0)
    outer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await outer
    (task,) = inner
    assert not task.done()  # still running on its own
    gate.set()
    await asyncio.wait([task])  # (not retrieving its error)
    await asyncio.sleep(0)  # one turn: its done callback runs
    del task, outer
    inner.clear()
    gc.collect()  # a future nobody retrieved reports itself when collected
    loop.set_exception_handler(None)
    assert seen == []

    # The work cancelled itself (the loop shutting down): its caller is cancelled too.
    async def cancelled_work() -> Any:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await _shielded(cancelled_work())
