"""Assembling a running system: the services, the saga log, the transport, the engine."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ordersaga.app.datadir import DataDir, Locations
from ordersaga.db import Database, open_database
from ordersaga.orders.demo import demo_world
from ordersaga.orders.order_saga import ORDER_SAGA
from ordersaga.orders.world import World, parse_world
from ordersaga.saga.crash import CrashPoints
from ordersaga.saga.executor import EngineSettings, SagaEngine
from ordersaga.saga.store import open_store
from ordersaga.saga.store.base import SagaStore
from ordersaga.services.base import Participant
from ordersaga.services.inventory import InventoryService
from ordersaga.services.payment import PaymentService
from ordersaga.services.shipping import ShippingService
from ordersaga.transport.base import Transport
from ordersaga.transport.faults import FaultInjector, FaultSettings
from ordersaga.transport.inprocess import InProcessTransport


@dataclass(frozen=True, slots=True)
class RuntimeSettings:
    data_dir: Path
    world: World | None = None  # None: the built-in demo world (used only by a new data dir)
    fault_rate: float = 0.0
    seed: int | None = None
    durable: bool = True
    store_url: str | None = None  # overrides the data dir's saga log (memory://, postgresql://)
    service_urls: Mapping[str, str] = field(default_factory=dict)  # overrides per service
    crash: CrashPoints = field(default_factory=CrashPoints)
    engine: EngineSettings = field(default_factory=EngineSettings)


@dataclass(slots=True)
class Runtime:
    world: World
    services: dict[str, Participant]
    databases: list[Database]
    store: SagaStore
    transport: Transport
    injector: FaultInjector | None
    engine: SagaEngine

    async def close(self) -> None:
        """Deliver pending late requests, flush the log, close every database."""
        try:
            await self.transport.close()
        finally:
            await self.store.close()
            for service in self.services.values():
                await service.close()
            for db in self.databases:
                await db.close()


def _locations(settings: RuntimeSettings) -> Locations:
    defaults = DataDir(settings.data_dir).locations()
    urls = {**defaults.service_urls, **settings.service_urls}
    return Locations(settings.store_url or defaults.store_url, urls)


async def open_services(
    urls: Mapping[str, str], world: World, *, durable: bool = True
) -> tuple[dict[str, Participant], list[Database]]:
    databases: list[Database] = []
    try:
        inventory_db = await open_database(urls["inventory"], durable=durable)
        databases.append(inventory_db)
        shipping_db = await open_database(urls["shipping"], durable=durable)
        databases.append(shipping_db)
        payment_db = await open_database(urls["payment"], durable=durable)
        databases.append(payment_db)
        services: dict[str, Participant] = {
            "inventory": await InventoryService.open(inventory_db, world.inventory),
            "shipping": await ShippingService.open(shipping_db, world.shipping),
            "payment": await PaymentService.open(payment_db, world.payment),
        }
    except BaseException:
        for db in databases:
            await db.close()
        raise
    return services, databases


def resolve_world(settings: RuntimeSettings, warn: Callable[[str], None]) -> World:
    """The world of the data dir: stored if it was initialised, else the given or demo world."""
    data_dir = DataDir(settings.data_dir)
    data_dir.prepare()
    if data_dir.exists():
        stored = parse_world(data_dir.read_meta()["world"])
        if settings.world is not None and settings.world.to_json() != stored.to_json():
            warn(f"data dir {settings.data_dir} continues its own state; --world ignored")
        return stored
    return settings.world or demo_world()


async def open_runtime(
    settings: RuntimeSettings, warn: Callable[[str], None] = lambda _m: None
) -> Runtime:
    world = resolve_world(settings, warn)
    locations = _locations(settings)
    services, databases = await open_services(
        locations.service_urls, world, durable=settings.durable
    )
    data_dir = DataDir(settings.data_dir)
    if not data_dir.exists():
        data_dir.write_meta(world.to_json())
    try:
        store = await open_store(locations.store_url, durable=settings.durable)
    except BaseException:
        for db in databases:
            await db.close()
        raise
    transport: Transport = InProcessTransport(services)
    injector = None
    if settings.fault_rate > 0:
        injector = FaultInjector(transport, FaultSettings(settings.fault_rate, settings.seed))
        transport = injector
    engine = SagaEngine(
        store,
        transport,
        [ORDER_SAGA],
        rng=random.Random(settings.seed),
        crash=settings.crash,
        settings=settings.engine,
    )
    return Runtime(world, services, databases, store, transport, injector, engine)
