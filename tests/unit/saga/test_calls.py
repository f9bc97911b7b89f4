"""A step call's first attempt, made before the retry loop, and the loop that goes on from it.

A call's first attempt through a closed breaker is sent at once; a definite answer ends the call
there. These tests check that anything else — an answer still in flight, a lost message, an
unreachable service, a cancellation — goes on exactly as the retry loop's own first attempt:
the same attempts, trail, counters and breaker.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from ordersaga.clock import FakeClock
from ordersaga.errors import ResponseLost, ServiceUnreachable
from ordersaga.protocol.messages import Command, KeyState, Probe, Reply, ReplyStatus
from ordersaga.saga.breaker import Breakers, BreakerSettings, BreakerState
from ordersaga.saga.calls import Caller, CallStatus
from ordersaga.saga.crash import NO_CRASH, CrashPoints
from ordersaga.saga.executor import SagaEngine
from ordersaga.saga.retry import PROBE_POLICY, RetryPolicy
from ordersaga.saga.store.memory import MemoryStore
from ordersaga.transport.base import Transport

KEY = "s1:a:action"


class Script(Transport):
    """Answers each attempt of a key with the next scripted reply or error."""

    def __init__(self, *answers: Reply | Exception) -> None:
        self.answers = list(answers)
        self.sent = 0

    async def send(self, command: Command) -> Reply:
        self.sent += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def probe(self, service: str, key: str) -> Probe:  # pragma: no cover - not probed
        raise AssertionError("no probe expected")


def _caller(
    transport: Transport, crash: CrashPoints = NO_CRASH, threshold: int = 12
) -> tuple[Caller, Breakers]:
    clock = FakeClock()
    breakers = Breakers(clock, BreakerSettings(threshold=threshold))
    caller = Caller(transport, breakers, clock, random.Random(1), crash, PROBE_POLICY, None)
    return caller, breakers


def _command() -> Command:
    return Command("A", "do", KEY, {}, 1_000.0)


async def test_a_first_attempt_answered_at_once_keeps_no_trail() -> None:
    caller, _ = _caller(Script(Reply(ReplyStatus.OK, {"x": 1})))
    outcome = await caller.call(_command(), RetryPolicy(), "a:action")
    assert outcome.status is CallStatus.SUCCEEDED and dict(outcome.body) == {"x": 1}
    assert (outcome.attempts, outcome.trail, outcome.probed, outcome.reason) == (1, (), False, None)
    assert (caller.stats.calls, caller.stats.attempts) == (1, 1)


async def test_a_first_attempt_refused_is_definite() -> None:
    caller, _ = _caller(Script(Reply.refused("no")))
    outcome = await caller.call(_command(), RetryPolicy(), "a:action")
    assert outcome.status is CallStatus.REFUSED and outcome.reason == "A do: no"
    assert (outcome.attempts, outcome.trail) == (1, ())


@pytest.mark.parametrize(
    ("first", "result"),
    [
        (Reply(ReplyStatus.IN_FLIGHT), "unknown"),
        (ResponseLost("lost"), "lost"),
        (ServiceUnreachable("down"), "unreachable"),
    ],
)
async def test_a_first_attempt_without_a_definite_answer_goes_on_in_the_loop(
    first: Reply | Exception, result: str
) -> None:
    transport = Script(first, Reply(ReplyStatus.OK))
    caller, breakers = _caller(transport)
    outcome = await caller.call(_command(), RetryPolicy(), "a:action")
    assert outcome.status is CallStatus.SUCCEEDED and transport.sent == 2
    assert outcome.attempts == 2
    assert [a.result for a in outcome.trail] == [result, "applied"]
    assert outcome.trail[0].at == 1_000.0  # sent as the call started
    assert (caller.stats.calls, caller.stats.attempts) == (1, 2)
    assert caller.stats.unreachable == (result == "unreachable")
    assert breakers["A"].state is BreakerState.CLOSED


async def test_a_first_attempt_that_fails_counts_towards_the_breaker() -> None:
    caller, breakers = _caller(Script(ResponseLost("lost"), Reply(ReplyStatus.OK)), threshold=1)
    outcome = await caller.call(_command(), RetryPolicy(), "a:action")
    # The first failure opened the breaker; the second attempt was its trial, and closed it.
    assert outcome.status is CallStatus.SUCCEEDED and outcome.attempts == 2
    assert breakers["A"].opened == 1 and breakers["A"].state is BreakerState.CLOSED


async def test_a_first_attempt_with_no_budget_left_is_settled_by_the_probe_path() -> None:
    class Probed(Script):
        async def probe(self, service: str, key: str) -> Probe:
            return Probe(KeyState.APPLIED, Reply(ReplyStatus.OK, {"found": True}))

    caller, _ = _caller(Probed(ResponseLost("lost")))
    outcome = await caller.call(_command(), RetryPolicy(maximum_attempts=1), "a:action")
    assert outcome.status is CallStatus.SUCCEEDED and outcome.probed
    assert outcome.attempts == 1 and [a.kind for a in outcome.trail] == ["a", "p"]


async def test_armed_crash_points_see_the_first_attempt() -> None:
    class Seen(CrashPoints):
        def __init__(self) -> None:
            super().__init__()
            self.names: list[str] = []

        def hit(self, name: str) -> None:
            self.names.append(name)

    crash = Seen()
    caller, _ = _caller(Script(Reply(ReplyStatus.OK)), crash)
    await caller.call(_command(), RetryPolicy(), "a:action")
    assert crash.names == ["call.before:a:action", "call.after:a:action"]


async def test_a_cancelled_first_attempt_leaves_the_breaker_as_it_was() -> None:
    class Hang(Script):
        async def send(self, command: Command) -> Reply:
            await asyncio.Event().wait()
            raise AssertionError("unreachable")  # pragma: no cover

    caller, breakers = _caller(Hang())
    task = asyncio.ensure_future(caller.call(_command(), RetryPolicy(), "a:action"))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breakers["A"].state is BreakerState.CLOSED and caller.stats.attempts == 1


async def test_a_first_attempt_answered_clears_the_breakers_failures_in_a_row() -> None:
    # Failures in a row open a breaker; a call answered at once in between starts the count anew.
    caller, breakers = _caller(Script(Reply(ReplyStatus.OK)), threshold=2)
    breaker = breakers["A"]
    breaker.record_failure()
    assert breaker.failures == 1 and breaker.state is BreakerState.CLOSED
    await caller.call(_command(), RetryPolicy(), "a:action")
    assert breaker.failures == 0
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED  # one failure in a row, not two
    assert dict(breakers) == {"A": breaker}  # the breakers made so far


async def test_the_engine_uses_the_breakers_it_is_given_even_with_none_made_yet() -> None:
    # Breakers is a dict of the breakers made so far: an empty one is falsy, and still the one
    # whose listener sees this engine's breakers open and close.
    breakers = Breakers(FakeClock())
    engine = SagaEngine(MemoryStore(), Script(Reply(ReplyStatus.OK)), [], breakers=breakers)
    assert engine.breakers is breakers
