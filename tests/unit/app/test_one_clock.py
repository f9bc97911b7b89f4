"""One fake clock drives what waits on time: a worker's lease deadline, the fault injector's
delays, the kit's backoff. The tests assert what happened; nothing in them really waits."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, cast

from ordersaga.cluster.worker import Worker, WorkerSettings
from ordersaga.errors import StorageError
from ordersaga.protocol.messages import Command, Probe, Reply, ReplyStatus
from ordersaga.saga.executor import SagaEngine
from ordersaga.saga.store import PostgresSagaStore
from ordersaga.saga.store.base import SagaRecord, SagaStatus
from ordersaga.saga.testing import FakeClock
from ordersaga.transport.base import Transport
from ordersaga.transport.faults import FaultInjector, FaultSettings

LEASE = 9.0


class _UnrenewableLog:
    """A saga log that hands out one saga, then fails every renewal (an outage)."""

    def __init__(self) -> None:
        self.record = SagaRecord("s1", "order", {}, "fingerprint", SagaStatus.RUNNING)
        self.handed_out = False
        self.renewals = 0

    async def claim(self, owner: str, lease_s: float, limit: int, **_: Any) -> list[SagaRecord]:
        if self.handed_out:
            return []
        self.handed_out = True
        return [self.record]

    async def renew(self, owner: str, ids: list[str], lease_s: float) -> list[str]:
        self.renewals += 1
        raise StorageError("the saga log is unavailable")

    async def release(self, owner: str, ids: list[str]) -> None:
        raise StorageError("the saga log is unavailable")

    def announce_finished(self, channel: str) -> None:
        """(What a worker asks of its log: this one finishes nothing.)"""


class _NeverStalled:
    """No call of this engine ever waits for an unreachable service."""

    def __init__(self) -> None:
        self.stalled: dict[asyncio.Task[Any], str] = {}


class _HangingEngine:
    """Drives every saga until cancelled."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cancelled = asyncio.Event()
        self.caller = _NeverStalled()

    async def resume(self, record: SagaRecord) -> Any:
        self.started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise


async def test_a_worker_that_cannot_renew_for_a_whole_lease_stops_its_sagas() -> None:
    clock, log, engine = FakeClock(), _UnrenewableLog(), _HangingEngine()
    said: list[str] = []
    settings = WorkerSettings(
        "postgresql://unused", {}, worker_id="w1", lease=LEASE, grace=0.0, data_key=bytes(32)
    )
    worker = Worker(
        settings,
        cast(PostgresSagaStore, log),
        cast(SagaEngine, engine),
        log=said.append,
        clock=clock,
    )
    running = asyncio.create_task(worker.run())
    await asyncio.wait_for(engine.started.wait(), 5)
    await asyncio.wait_for(engine.cancelled.wait(), 5)
    # Renewals every lease / 3 on the fake clock: the saga is given up once a whole lease has
    # passed without one, not before.
    assert clock.sleeps[: log.renewals] == [LEASE / 3] * log.renewals
    assert clock.now - 1_000.0 > LEASE
    assert any("cannot renew leases" in line for line in said)
    worker.stop()
    counts = await asyncio.wait_for(running, 5)
    assert counts.claimed == 1 and counts.confirmed == 0


class _Echo(Transport):
    def __init__(self) -> None:
        self.sent: list[tuple[str, float]] = []
        self.clock: FakeClock | None = None

    async def send(self, command: Command) -> Reply:
        assert self.clock is not None
        self.sent.append((command.key, self.clock.now))
        return Reply(ReplyStatus.OK, {})

    async def probe(self, service: str, key: str) -> Probe:
        raise NotImplementedError

    async def close(self) -> None:
        return None


async def test_the_fault_injector_delays_and_late_deliveries_wait_on_the_clock() -> None:
    clock, inner = FakeClock(), _Echo()
    inner.clock = clock
    settings = FaultSettings(rate=1.0, seed=5, max_delay=2.0, max_late=7.0)
    injector = FaultInjector(inner, settings, clock=clock)
    command = Command("svc", "act", "saga:step:action", {})
    for _ in range(20):
        with contextlib.suppress(Exception):
            await injector.send(command)
    await injector.drain()
    assert injector.counts["delay"] > 0 and injector.counts["late"] > 0
    # Every wait was asked of the fake clock, within the settings' bounds: none really happened.
    assert len(clock.sleeps) >= injector.counts["delay"] + injector.counts["late"]
    assert all(0.0 <= s <= 7.0 for s in clock.sleeps)
    assert clock.now > 1_000.0
