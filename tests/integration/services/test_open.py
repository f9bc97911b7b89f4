"""Opening a service: schema creation and versioning, seeding, stored configuration."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from ordersaga.db import open_database
from ordersaga.errors import ConfigError
from ordersaga.services.config import InventoryConfig, ItemSpec, PaymentConfig, ShippingConfig
from ordersaga.services.factory import ServiceConfigs, data_dir_urls, open_services
from ordersaga.services.inventory import InventoryService
from tests.integration.services.helpers import (
    INVENTORY,
    PAYMENT,
    SHIPPING,
    TODAY,
    Case,
    authorize,
    items,
    open_inventory,
    open_payment,
    open_shipping,
    prepare,
    reserve,
)


async def test_new_database_without_config_is_a_clear_error(case: Case, db_url: str) -> None:
    with pytest.raises(ConfigError, match=f"the {case.name} database .* is new"):
        await case.open(db_url, None)


async def test_reopening_keeps_state_and_ignores_a_new_config(db_url: str) -> None:
    service = await open_inventory(db_url)
    assert (await service.handle(reserve("s1", ("A", 3)))).ok
    await service.close()
    other = InventoryConfig({"A": ItemSpec(1, 1, Decimal(1)), "Q": ItemSpec(1, 5, Decimal(1))})
    service = await open_inventory(db_url, other)
    try:
        stock = await items(service.db)
        assert set(stock) == {"A", "B", "C"}
        assert (stock["A"]["available"], stock["A"]["held"], stock["A"]["price_cents"]) == (
            97,
            3,
            1250,
        )
        assert (await service.handle(reserve("s1", ("A", 3)))).ok  # replayed, not re-applied
        assert (await items(service.db))["A"]["held"] == 3
    finally:
        await service.close()


async def test_shipping_and_payment_use_their_stored_config(db_url: str, tmp_path: Path) -> None:
    shipping = await open_shipping(db_url)
    await shipping.close()
    shipping = await open_shipping(
        db_url, ShippingConfig(frozenset({"XX"}), 0, 0, Decimal(1)), pool_size=2
    )
    try:
        assert (await shipping.handle(prepare("s1", country="de"))).body == {"cost_cents": 829}
    finally:
        await shipping.close()
    url = f"sqlite:///{tmp_path / 'payment.db'}"
    await (await open_payment(url)).close()
    payment = await open_payment(url, PaymentConfig(frozenset({"Cash"}), 0))
    try:
        assert (await payment.handle(authorize("s1", 5_000, user=456))).ok
        assert not (await payment.handle(authorize("s2", 1, user=456))).ok
    finally:
        await payment.close()


async def test_a_newer_schema_version_is_refused(db_url: str) -> None:
    await (await open_inventory(db_url)).close()
    db = await open_database(db_url)
    async with db.transaction() as tx:
        await tx.execute("UPDATE schema_version SET version = 99 WHERE component = 'inventory'")
    with pytest.raises(ConfigError, match="schema is version 99"):
        await InventoryService.open(db)
    await db.close()


async def test_concurrent_first_opens_seed_once(db_url: str) -> None:
    first = InventoryConfig({"A": ItemSpec(100, 5, Decimal(1))})
    second = InventoryConfig({"A": ItemSpec(200, 7, Decimal(1)), "B": ItemSpec(1, 1, Decimal(1))})
    services = await asyncio.gather(
        *(open_inventory(db_url, cfg, pool_size=2) for cfg in (first, second, first, second))
    )
    try:
        stock = await items(services[0].db)
        assert set(stock) in ({"A"}, {"A", "B"})
        assert stock["A"]["initial_stock"] in (5, 7)
        rows = await services[0].db.fetchall("SELECT * FROM config")
        assert len(rows) == 1
    finally:
        for service in services:
            await service.close()


@pytest.mark.parametrize(
    "config",
    [
        InventoryConfig({"A": ItemSpec(-1, 5, Decimal(1))}),
        InventoryConfig({"A": ItemSpec(1, -5, Decimal(1))}),
        InventoryConfig({"A": ItemSpec(1, 5, Decimal("-0.5"))}),
        InventoryConfig({"A": ItemSpec(1, 5, Decimal("NaN"))}),
        InventoryConfig({"": ItemSpec(1, 5, Decimal(1))}),
        ShippingConfig(frozenset({"US"}), -1, 0, Decimal(1)),
        ShippingConfig(frozenset({""}), 1, 0, Decimal(1)),
        ShippingConfig(frozenset({"US"}), 1, 0, Decimal("-1")),
        PaymentConfig(frozenset({"Card"}), -1),
        PaymentConfig(frozenset({"Card"}), 1, {-4: 5}),
        PaymentConfig(frozenset({""}), 1),
    ],
    ids=lambda config: type(config).__name__,
)
async def test_bad_configs_are_config_errors(tmp_path: Path, config: object) -> None:
    opener: Any = {
        InventoryConfig: open_inventory,
        ShippingConfig: open_shipping,
        PaymentConfig: open_payment,
    }[type(config)]
    with pytest.raises(ConfigError):
        await opener(f"sqlite:///{tmp_path / 'x.db'}", config)


CONFIGS = ServiceConfigs(INVENTORY, SHIPPING, PAYMENT)


async def test_open_services_in_a_data_dir(tmp_path: Path) -> None:
    urls = data_dir_urls(tmp_path / "data")
    services = await open_services(urls, CONFIGS, today=lambda: TODAY)
    try:
        assert set(services.by_name()) == {"inventory", "shipping", "payment"}
        assert (await services.inventory.handle(reserve("s1", ("A", 1)))).ok
        assert (await services.shipping.handle(prepare("s1"))).ok
        assert (await services.payment.handle(authorize("s1", 100))).ok
    finally:
        await services.close()
    assert sorted(p.name for p in (tmp_path / "data").glob("*.db")) == [
        "inventory.db",
        "payment.db",
        "shipping.db",
    ]
    services = await open_services(urls)  # existing data dir: no config needed
    try:
        assert (await items(services.inventory.db))["A"]["held"] == 1
    finally:
        await services.close()


async def test_open_services_without_config_on_a_new_dir_fails_cleanly(tmp_path: Path) -> None:
    await (await open_inventory(data_dir_urls(tmp_path)["inventory"])).close()
    with pytest.raises(ConfigError, match="shipping database"):
        await open_services(data_dir_urls(tmp_path))
    with pytest.raises(ConfigError, match="no database URL for payment"):
        await open_services({"inventory": "x", "shipping": "y"})
