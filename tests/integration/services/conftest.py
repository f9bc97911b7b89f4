"""Fixtures for the service suite: every test here runs on SQLite and on PostgreSQL.

On PostgreSQL each test gets a fresh *schema* in one database per session (the URL selects it
with ``?search_path=...``, which asyncpg passes to the server): as isolated as a fresh database
for a service, at a hundredth of the cost of creating and dropping one per test.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from ordersaga.participant.service import KitService
from ordersaga.services.inventory import InventoryService
from ordersaga.services.payment import PaymentService
from ordersaga.services.shipping import ShippingService
from tests.conftest import pg_server_url, with_database
from tests.integration.services.helpers import (
    CASES,
    Case,
    open_inventory,
    open_payment,
    open_shipping,
)


async def _admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_services_database() -> Iterator[str]:
    """One PostgreSQL database for this session's service tests (skips/fails like ``pg_url``)."""
    admin = pg_server_url()
    name = f"ordersaga_services_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_admin(admin, f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"cannot reach PostgreSQL at {admin}: {exc}")
    yield with_database(admin, name)
    asyncio.run(_admin(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def pg_schema_url(pg_services_database: str) -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL schema, as a URL whose connections use it."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    await _admin(pg_services_database, f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in pg_services_database else "?"
    yield f"{pg_services_database}{separator}search_path={schema}"
    await _admin(pg_services_database, f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new, empty database URL, once per backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'service.db'}"
    url: str = request.getfixturevalue("pg_schema_url")
    return url


@pytest.fixture
async def inventory(db_url: str) -> AsyncIterator[InventoryService]:
    service = await open_inventory(db_url)
    yield service
    await service.close()


@pytest.fixture
async def shipping(db_url: str) -> AsyncIterator[ShippingService]:
    service = await open_shipping(db_url)
    yield service
    await service.close()


@pytest.fixture
async def payment(db_url: str) -> AsyncIterator[PaymentService]:
    service = await open_payment(db_url)
    yield service
    await service.close()


@pytest.fixture(params=CASES, ids=str)
def case(request: pytest.FixtureRequest) -> Case:
    """Each of the three services, for behaviour all of them share."""
    result: Case = request.param
    return result


@pytest.fixture
async def service(case: Case, db_url: str) -> AsyncIterator[KitService]:
    opened = await case.open(db_url)
    yield opened
    await opened.close()
