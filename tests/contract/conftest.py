"""Saga store backends for the contract suite: memory, SQLite (a temp file), PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ordersaga.saga.store import SagaStore, open_store
from ordersaga.saga.testing import TickClock


@dataclass
class Backend:
    name: str
    url: str
    clock: TickClock

    @property
    def durable(self) -> bool:
        return self.name != "memory"

    @property
    def batched(self) -> bool:
        return self.name != "memory"

    async def open(self, **options: object) -> SagaStore:
        return await open_store(self.url, clock=self.clock, **options)  # type: ignore[arg-type]


def _backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    name: str = request.param
    if name == "memory":
        url = "memory://"
    elif name == "sqlite":
        url = f"sqlite:///{tmp_path / 'saga.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    return Backend(name, url, TickClock())


PG = pytest.param("postgresql", marks=pytest.mark.pg)


@pytest.fixture(params=["memory", "sqlite", PG])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """Every store backend."""
    return _backend(request, tmp_path)


@pytest.fixture(params=["sqlite", PG])
def sql_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """The durable, group-committing backends."""
    return _backend(request, tmp_path)


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[SagaStore]:
    opened = await backend.open()
    yield opened
    await opened.close()


@pytest.fixture
async def sql_store(sql_backend: Backend) -> AsyncIterator[SagaStore]:
    opened = await sql_backend.open()
    yield opened
    await opened.close()
