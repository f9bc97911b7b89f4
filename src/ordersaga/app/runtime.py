"""Assembling a running system: the services, the saga log, the transport, the engine."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ordersaga.app.datadir import DataDir, Locations
from ordersaga.orders.demo import demo_world
from ordersaga.orders.order_saga import ORDER_SAGA
from ordersaga.orders.world import World, parse_world
from ordersaga.saga.crash import CrashPoints
from ordersaga.saga.executor import EngineSettings, SagaEngine
from ordersaga.saga.store import open_store
from ordersaga.saga.store.base import SagaStore
from ordersaga.services.factory import ServiceConfigs, Services, open_services
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
    services: Services
    store: SagaStore
    transport: Transport
    injector: FaultInjector | None
    engine: SagaEngine

    async def close(self) -> None:
        """Deliver pending late requests, flush the log, close every database."""
        try:
            await self.transport.close()
        finally:
            try:
                await self.store.close()
            finally:
                await self.services.close()


def _locations(settings: RuntimeSettings) -> Locations:
    defaults = DataDir(settings.data_dir).locations()
    urls = {**defaults.service_urls, **settings.service_urls}
    return Locations(settings.store_url or defaults.store_url, urls)


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
    configs = ServiceConfigs(world.inventory, world.shipping, world.payment)
    services = await open_services(locations.service_urls, configs, durable=settings.durable)
    data_dir = DataDir(settings.data_dir)
    if not data_dir.exists():
        data_dir.write_meta(world.to_json())
    try:
        store = await open_store(locations.store_url, durable=settings.durable)
    except BaseException:
        await services.close()
        raise
    transport: Transport = InProcessTransport(services.by_name())
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
    return Runtime(world, services, store, transport, injector, engine)
