"""The saga store contract (:class:`ordersaga.saga.testing.SagaStoreContract`), run against every
backend of the repository: memory, SQLite (a temp file), PostgreSQL (a fresh database).

The suite itself ships with the library, so that a store of someone else's passes the very same
tests; here each backend only says how to open it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ordersaga.clock import Clock
from ordersaga.saga.store import SagaStore, open_store
from ordersaga.saga.testing import SagaStoreContract


class TestMemoryStore(SagaStoreContract):
    durable = False

    async def create_store(self, clock: Clock) -> SagaStore:
        return await open_store("memory://", clock=clock)


class TestSqliteStore(SagaStoreContract):
    @pytest.fixture(autouse=True)
    def _log_file(self, tmp_path: Path) -> None:
        self.url = f"sqlite:///{tmp_path / 'saga.db'}"

    async def create_store(self, clock: Clock) -> SagaStore:
        return await open_store(self.url, clock=clock)


@pytest.mark.pg
class TestPostgresStore(SagaStoreContract):
    @pytest.fixture(autouse=True)
    def _database(self, pg_url: str) -> None:
        self.url = pg_url

    async def create_store(self, clock: Clock) -> SagaStore:
        return await open_store(self.url, clock=clock)
