"""The engine and the message-age limit: stamps, no send past the limit, ``expired`` replies.

Fake clock and scripted services: the retries' backoff advances time without waiting.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable

from ordersaga.errors import RequestLost, ResponseLost
from ordersaga.protocol.messages import Command, Reply, ReplyStatus
from ordersaga.saga.executor import EngineSettings, SagaEngine
from ordersaga.saga.retry import RetryPolicy
from ordersaga.saga.store.base import SagaStatus
from ordersaga.saga.store.memory import MemoryStore
from ordersaga.saga.testing import FakeClock

from .fakes import Ledger, ScriptedTransport
from .test_executor import make_definition

LIMIT = 10.0


class StampingTransport(ScriptedTransport):
    """Records each attempt's (key, sent_at, age on arrival); answers ``expired`` when told."""

    def __init__(
        self,
        services: dict[str, Ledger],
        clock: FakeClock,
        fail: Callable[[Command], str | None],
    ) -> None:
        super().__init__(services, fail)
        self.clock = clock
        self.attempts: list[tuple[str, float, float]] = []

    async def send(self, command: Command) -> Reply:
        assert command.sent_at is not None, "the engine stamps every command"
        self.attempts.append((command.key, command.sent_at, self.clock.now - command.sent_at))
        how = self.fail(command)
        if how == "expired":
            return Reply(ReplyStatus.EXPIRED, {}, "expired: scripted")
        if how == "request":
            raise RequestLost("scripted")
        reply = await self.services[command.service].handle(command)
        if how == "response":
            raise ResponseLost("scripted")
        return reply

    def of(self, key: str) -> list[tuple[float, float]]:
        return [(sent_at, age) for k, sent_at, age in self.attempts if k == key]


def world(
    fail: Callable[[Command], str | None], action_policy: RetryPolicy | None = None
) -> tuple[SagaEngine, dict[str, Ledger], StampingTransport]:
    ledgers = {n: Ledger(n) for n in "ABC"}
    clock = FakeClock()
    transport = StampingTransport(ledgers, clock, fail)
    settings = EngineSettings(
        action_policy=action_policy or RetryPolicy(),
        max_message_age=LIMIT,
        attention_after=1e9,
    )
    engine = SagaEngine(
        MemoryStore(),
        transport,
        [make_definition()],
        clock=clock,
        rng=random.Random(5),
        settings=settings,
    )
    return engine, ledgers, transport


async def test_an_action_is_never_sent_past_the_limit_and_is_settled_by_the_probe() -> None:
    # Every response of s1's first action is lost, but it was applied the first time.
    slow = RetryPolicy(
        initial_interval=1.0, maximum_interval=4.0, maximum_attempts=None, deadline=None
    )
    engine, ledgers, transport = world(
        lambda c: "response" if c.key == "s1:a:action" else None, action_policy=slow
    )
    result = await engine.start("trip", "s1", {}, "fp")
    assert result.status is SagaStatus.CONFIRMED  # the probe found it applied
    attempts = transport.of("s1:a:action")
    assert len(attempts) > 2
    assert len({sent_at for sent_at, _ in attempts}) == 1  # retries carry the first stamp
    assert all(age <= LIMIT for _, age in attempts)
    assert ledgers["A"].effects["s1:a:action"] == 1


async def test_a_compensation_past_the_limit_is_stamped_anew_and_finishes() -> None:
    tries: Counter[str] = Counter()

    def fail(command: Command) -> str | None:
        if command.key == "s1:b:action":
            return "request"  # b never gets through: compensate a
        if command.key == "s1:a:compensate":
            tries[command.key] += 1
            return "request" if tries[command.key] <= 40 else None
        return None

    quick = RetryPolicy(maximum_attempts=2, deadline=None)
    engine, ledgers, transport = world(fail, action_policy=quick)
    result = await engine.start("trip", "s1", {}, "fp")
    assert result.status is SagaStatus.FAILED
    assert ledgers["A"].state["s1:a"] == "compensated"
    attempts = transport.of("s1:a:compensate")
    assert len(attempts) == 41
    assert all(age <= LIMIT for _, age in attempts)
    assert len({sent_at for sent_at, _ in attempts}) > 1  # stamped anew past the limit


async def test_an_expired_reply_is_retried_like_a_lost_response() -> None:
    seen: Counter[str] = Counter()

    def fail(command: Command) -> str | None:
        seen[command.key] += 1
        return "expired" if command.key == "s1:c:action" and seen[command.key] == 1 else None

    engine, ledgers, _ = world(fail)
    result = await engine.start("trip", "s1", {}, "fp")
    assert result.status is SagaStatus.CONFIRMED
    assert result.retries == 1
    assert ledgers["C"].effects["s1:c:action"] == 1
