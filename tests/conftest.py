"""Shared fixtures: temporary data dirs and fresh PostgreSQL databases; the Hypothesis profile.

PostgreSQL-backed tests read the server URL from ``ORDERSAGA_PG_URL``. Without it they skip with
a clear reason on a developer's machine; under ``CI=true`` a missing server is a failure.

The Hypothesis profile comes from ``HYPOTHESIS_PROFILE`` (``dev`` by default, ``ci`` in
``.ci/run``): see tests/hypothesis_profiles.py. It is loaded here, before any test module builds
its ``settings``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from ordersaga.saga.store import PostgresSagaStore, open_store
from tests import hypothesis_profiles

HYPOTHESIS_PROFILE = hypothesis_profiles.load()

PG_URL_ENV = "ORDERSAGA_PG_URL"


def pg_server_url() -> str:
    """The admin URL of the test PostgreSQL server, or skip/fail as the environment demands."""
    url = os.environ.get(PG_URL_ENV)
    if not url:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{PG_URL_ENV} is not set, and under CI=true PostgreSQL tests must run")
        pytest.skip(f"{PG_URL_ENV} not set: PostgreSQL-backed test skipped")
    return url


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def pytest_report_header() -> str:
    return f"hypothesis profile: {HYPOTHESIS_PROFILE} (set by {hypothesis_profiles.PROFILE_ENV})"


@pytest.fixture
async def pg_database_factory() -> AsyncIterator[Callable[[], object]]:
    """An async function making a fresh database and giving its URL; all are dropped after."""
    admin = pg_server_url()
    created: list[str] = []

    async def make() -> str:
        name = f"ordersaga_test_{uuid.uuid4().hex[:12]}"
        try:
            conn = await asyncpg.connect(admin)
        except (OSError, asyncpg.PostgresError) as exc:
            pytest.fail(f"cannot reach PostgreSQL at {admin}: {exc}")
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        created.append(name)
        return with_database(admin, name)

    yield make
    if created:
        conn = await asyncpg.connect(admin)
        try:
            for name in created:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@pytest.fixture
async def pg_url(pg_database_factory: Callable[[], object]) -> str:
    """A fresh, empty PostgreSQL database for this test."""
    return await pg_database_factory()  # type: ignore[misc,no-any-return]


@pytest.fixture
async def pg_store(pg_url: str) -> AsyncIterator[PostgresSagaStore]:
    """A PostgreSQL saga log on this test's fresh database."""
    store = await open_store(pg_url)
    assert isinstance(store, PostgresSagaStore)
    yield store
    await store.close()


@pytest.fixture
def data_dir(tmp_path: object) -> Iterator[object]:
    yield tmp_path
