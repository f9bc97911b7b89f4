"""open_store picks a backend by URL and manages the schema version."""

from __future__ import annotations

from pathlib import Path

import pytest

from ordersaga.db import open_database
from ordersaga.errors import ConfigError, StorageError
from ordersaga.saga.store import MemoryStore, SqliteSagaStore, open_store
from ordersaga.saga.store.schema import COMPONENT, SCHEMA_VERSION


async def test_memory_url() -> None:
    store = await open_store("memory://")
    assert isinstance(store, MemoryStore)
    await store.close()


@pytest.mark.parametrize("form", ["sqlite:///{}", "{}"])
async def test_sqlite_url_or_bare_path(tmp_path: Path, form: str) -> None:
    path = tmp_path / "sub" / "saga.db"
    store = await open_store(form.format(path), max_batch=8)
    assert isinstance(store, SqliteSagaStore) and store.max_batch == 8
    await store.create("s1", "order", {}, "fp")
    await store.close()
    assert path.exists()


async def test_an_unknown_scheme_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        await open_store("mysql://localhost/db")


async def test_schema_creation_is_idempotent_and_versioned(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'saga.db'}"
    for _ in range(2):
        store = await open_store(url)
        await store.close()
    db = await open_database(url)
    try:
        rows = await db.fetchall("SELECT component, version FROM schema_version")
        assert rows == [{"component": COMPONENT, "version": SCHEMA_VERSION}]
        async with db.transaction() as tx:
            await tx.execute("UPDATE schema_version SET version = 99")
    finally:
        await db.close()
    with pytest.raises(StorageError, match="version 99"):
        await open_store(url)


async def test_non_durable_sqlite_keeps_the_semantics(tmp_path: Path) -> None:
    store = await open_store(str(tmp_path / "fast.db"), durable=False)
    await store.create("s1", "order", {"a": 1}, "fp")
    record = await store.load("s1")
    assert record is not None and record.input == {"a": 1}
    await store.close()
