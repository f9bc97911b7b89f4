"""Run the real pipeline in-process (real services, real SQLite files) and audit the result."""

from __future__ import annotations

import asyncio
import dataclasses
import io
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

from ordersaga.local.run import RunOptions, RunReport, run_orders
from ordersaga.local.runtime import RuntimeSettings
from ordersaga.orders.world import World
from ordersaga.proving.audit import AuditReport, audit_data_dir
from ordersaga.saga.executor import EngineSettings
from ordersaga.saga.retry import ACTION_POLICY


async def _numbered(lines: Iterable[str]) -> AsyncIterator[tuple[int, bytes | None]]:
    for n, line in enumerate(lines, 1):
        yield n, line.encode()


def run(
    lines: Iterable[str],
    data: Path,
    *,
    world: World | None = None,
    concurrency: int = 1,
    fault_rate: float = 0.0,
    seed: int | None = None,
    max_attempts: int | None = None,
) -> tuple[list[str], RunReport]:
    engine = EngineSettings()
    if max_attempts is not None:
        policy = dataclasses.replace(ACTION_POLICY, maximum_attempts=max_attempts)
        engine = dataclasses.replace(engine, action_policy=policy)
    settings = RuntimeSettings(
        data_dir=data, world=world, fault_rate=fault_rate, seed=seed, engine=engine
    )
    out = io.StringIO()
    report = asyncio.run(
        run_orders(
            RunOptions(settings, concurrency=concurrency), _numbered(lines), out, io.StringIO()
        )
    )
    return out.getvalue().splitlines(), report


def audit(data: Path) -> AuditReport:
    return asyncio.run(audit_data_dir(data))
