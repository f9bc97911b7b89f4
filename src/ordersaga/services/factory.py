"""Opening the three services together, each on its own database.

The embedded setup keeps one SQLite file per service in the data dir (``inventory.db``,
``shipping.db``, ``payment.db``); the distributed one passes a PostgreSQL URL per service.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import TypeVar

from ordersaga.db import Database, open_database
from ordersaga.db.deployment import Member, check_member, database_id, holds_records
from ordersaga.db.identity import check_shared, fingerprint, redacted, stamp_identity
from ordersaga.errors import ConfigError
from ordersaga.participant.kit import RunnerOptions
from ordersaga.protocol.participant import Participant
from ordersaga.services.config import InventoryConfig, PaymentConfig, ShippingConfig
from ordersaga.services.inventory import InventoryService
from ordersaga.services.payment import PaymentService
from ordersaga.services.shipping import ShippingService

__all__ = [
    "SERVICE_NAMES",
    "ServiceConfigs",
    "Services",
    "data_dir_urls",
    "open_service",
    "open_services",
]

SERVICE_NAMES = ("inventory", "shipping", "payment")

S = TypeVar("S")


@dataclass(frozen=True, slots=True)
class ServiceConfigs:
    """The world, split by service: what a new set of databases is seeded from."""

    inventory: InventoryConfig
    shipping: ShippingConfig
    payment: PaymentConfig


@dataclass(frozen=True, slots=True)
class Services:
    """The three open services; closing them closes their databases."""

    inventory: InventoryService
    shipping: ShippingService
    payment: PaymentService
    #: The PostgreSQL databases' members of the deployment (see :mod:`ordersaga.db.deployment`).
    members: tuple[Member, ...] = field(default=())

    def by_name(self) -> dict[str, Participant]:
        return {"inventory": self.inventory, "shipping": self.shipping, "payment": self.payment}

    async def close(self) -> None:
        for service in (self.inventory, self.shipping, self.payment):
            await service.close()


def data_dir_urls(data_dir: Path | str) -> dict[str, str]:
    """The SQLite URL of each service's database in ``data_dir``."""
    root = Path(data_dir)
    return {name: f"sqlite:///{root / f'{name}.db'}" for name in SERVICE_NAMES}


async def open_services(
    urls: Mapping[str, str],
    configs: ServiceConfigs | None = None,
    *,
    durable: bool = True,
    pool_size: int = 10,
    options: RunnerOptions | None = None,
    today: Callable[[], date] = date.today,
    known: Mapping[str, str] | None = None,
    log: str = "",
    check_world: bool = False,
) -> Services:
    """Open the three services on ``urls`` (a URL per service name; see :func:`data_dir_urls`).

    New databases are seeded from ``configs``; existing ones keep their stored state. Without
    ``configs``, every database must exist already (else :class:`ConfigError`). If one service
    fails to open, those already opened are closed again. ``known``: the service database ids
    the saga log ``log`` knows; a PostgreSQL database it does not accept is refused before
    anything is seeded (:func:`ordersaga.db.deployment.check_member`). ``check_world``: a
    PostgreSQL database seeded from another world than ``configs`` is refused.
    """
    missing = [name for name in SERVICE_NAMES if name not in urls]
    if missing:
        raise ConfigError(f"no database URL for {', '.join(missing)}")
    options = options or RunnerOptions()
    members: list[Member] = []

    async def open_one(name: str, opener: Callable[[Database], Awaitable[S]]) -> S:
        db = await open_database(urls[name], durable=durable, pool_size=pool_size, pipelined=True)
        try:
            return await _claimed(db, name, configs, check_world, opener(db), (known, log, members))
        except BaseException:
            await db.close()
            raise

    opened: list[Participant] = []
    try:
        inventory = await open_one(
            "inventory",
            lambda db: InventoryService.open(
                db, None if configs is None else configs.inventory, options=options
            ),
        )
        opened.append(inventory)
        shipping = await open_one(
            "shipping",
            lambda db: ShippingService.open(
                db, None if configs is None else configs.shipping, options=options
            ),
        )
        opened.append(shipping)
        payment = await open_one(
            "payment",
            lambda db: PaymentService.open(
                db, None if configs is None else configs.payment, options=options, today=today
            ),
        )
    except BaseException:
        for service in opened:
            await service.close()
        raise
    return Services(inventory, shipping, payment, tuple(members))


async def open_service(
    name: str,
    url: str,
    configs: ServiceConfigs | None = None,
    *,
    durable: bool = True,
    pool_size: int = 10,
    options: RunnerOptions | None = None,
    today: Callable[[], date] = date.today,
    check_world: bool = False,
) -> InventoryService | ShippingService | PaymentService:
    """Open the one service ``name`` on its database ``url`` (a service process's own start).

    A new database is seeded from ``configs``; several processes may open one database at once
    (replicas), and only one of them seeds it. ``check_world``: a PostgreSQL database seeded
    from another world than ``configs`` is refused (the world was given explicitly).
    """
    if name not in SERVICE_NAMES:
        raise ConfigError(f"unknown service {name!r} (expected one of {', '.join(SERVICE_NAMES)})")
    options = options or RunnerOptions()
    db = await open_database(url, durable=durable, pool_size=pool_size, pipelined=True)
    try:
        opening: Awaitable[InventoryService | ShippingService | PaymentService]
        if name == "inventory":
            opening = InventoryService.open(
                db, None if configs is None else configs.inventory, options=options
            )
        elif name == "shipping":
            opening = ShippingService.open(
                db, None if configs is None else configs.shipping, options=options
            )
        else:
            opening = PaymentService.open(
                db, None if configs is None else configs.payment, options=options, today=today
            )
        return await _claimed(db, name, configs, check_world, opening)
    except BaseException:
        await db.close()
        raise


async def _claimed(
    db: Database,
    name: str,
    configs: ServiceConfigs | None,
    check_world: bool,
    opening: Awaitable[S],
    deployment: tuple[Mapping[str, str] | None, str, list[Member]] | None = None,
) -> S:
    """Open a service (``opening``) on ``db`` once its identity checks (PostgreSQL; see
    :func:`ordersaga.db.identity.check_shared`), stamping a new database after its tables.

    ``deployment``: the ids the saga log knows (None: not checked), the log's name, and the
    list the opened database's :class:`Member` is appended to (PostgreSQL only).
    """
    world = None if configs is None else fingerprint(asdict(getattr(configs, name)))
    try:
        stamp = await check_shared(db, name, world=world, check_world=check_world)
        if deployment is not None and db.dialect != "sqlite":
            found = Member(name, await database_id(db), await holds_records(db), redacted(db.url))
            known, log, _members = deployment
            if known is not None:
                check_member(known, found, log)
    except BaseException:
        if inspect.iscoroutine(opening):
            opening.close()  # never started: nothing was created
        raise
    service = await opening
    if stamp is not None:
        await stamp_identity(db, stamp)
    if deployment is not None and db.dialect != "sqlite":
        deployment[2].append(Member(name, await database_id(db), found.records, found.what))
    return service
