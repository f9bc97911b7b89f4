"""Assembling a running system: the services, the saga log, the transport, the engine.

Two setups, the same code: by default the three services run in this process, each on its own
database (the data dir's files, or ``service_urls``), behind the in-process transport. With
``http_services`` (a base URL per service) the services are other processes (``ordersaga
serve``), reached through the HTTP transport, and this process opens no service database. The
fault injector wraps either transport.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ordersaga.errors import ConfigError, TransportError
from ordersaga.local.datadir import DataDir, Locations
from ordersaga.local.telemetry import EngineTelemetry, TelemetrySettings
from ordersaga.orders.demo import demo_world
from ordersaga.orders.order_saga import ORDER_SAGA
from ordersaga.orders.world import World, parse_world
from ordersaga.saga.crash import CrashPoints
from ordersaga.saga.executor import EngineSettings, SagaEngine
from ordersaga.saga.store import PostgresSagaStore, open_store
from ordersaga.saga.store.base import SagaStore
from ordersaga.services.factory import SERVICE_NAMES, ServiceConfigs, Services, open_services
from ordersaga.transport.base import Transport
from ordersaga.transport.faults import FaultInjector, FaultSettings
from ordersaga.transport.http import HttpSettings, HttpTransport
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
    #: A base URL per service: talk to them over HTTP instead of opening them in process.
    http_services: Mapping[str, str] = field(default_factory=dict)
    http: HttpSettings = field(default_factory=HttpSettings)
    crash: CrashPoints = field(default_factory=CrashPoints)
    engine: EngineSettings = field(default_factory=EngineSettings)
    telemetry: TelemetrySettings = field(default_factory=TelemetrySettings)


@dataclass(slots=True)
class Runtime:
    world: World
    services: Services | None  # None when the services are reached over HTTP
    store: SagaStore
    transport: Transport
    injector: FaultInjector | None
    engine: SagaEngine
    telemetry: EngineTelemetry

    async def close(self) -> None:
        """Deliver pending late requests, flush the log, close every database."""
        try:
            await self.transport.close()
            self.telemetry.close()
        finally:
            try:
                await self.store.close()
            finally:
                if self.services is not None:
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
    telemetry = EngineTelemetry(settings.telemetry)  # first: a bad tracing setup opens nothing
    services: Services | None = None
    transport: Transport
    if settings.http_services:
        if settings.world is not None:
            warn("--world does not reach services served over HTTP (each was seeded at start)")
        transport = await _http_transport(settings, warn)
    else:
        configs = ServiceConfigs(world.inventory, world.shipping, world.payment)
        services = await open_services(locations.service_urls, configs, durable=settings.durable)
        transport = InProcessTransport(services.by_name())
    data_dir = DataDir(settings.data_dir)
    if not data_dir.exists():
        data_dir.write_meta(world.to_json())
    try:
        store = await open_store(
            locations.store_url, durable=settings.durable, crash=settings.crash
        )
        await _refuse_a_log_with_workers(store)
    except BaseException:
        await transport.close()
        if services is not None:
            await services.close()
        raise
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
        observer=telemetry.observer,
    )
    telemetry.attach(engine)
    return Runtime(world, services, store, transport, injector, engine, telemetry)


async def _refuse_a_log_with_workers(store: SagaStore) -> None:
    """An executing run and workers on one saga log would drive the same sagas at once."""
    if isinstance(store, PostgresSagaStore):
        try:
            await store.lock_executors(worker=False)
        except BaseException:
            await store.close()
            raise


async def _http_transport(settings: RuntimeSettings, warn: Callable[[str], None]) -> Transport:
    return await connect_http_services(settings.http_services, settings.http, warn)


async def connect_http_services(
    urls: Mapping[str, str], http: HttpSettings, warn: Callable[[str], None]
) -> HttpTransport:
    """The HTTP transport to the services at ``urls``, after checking who answers where.

    A service that does not answer yet is only a warning (calls to it wait, like calls to a
    service that dies during the run); one that answers as another service is a ConfigError.
    """
    missing = [name for name in SERVICE_NAMES if name not in urls]
    if missing:
        raise ConfigError(f"no HTTP URL for {', '.join(missing)}: --services needs all three")
    transport = HttpTransport(urls, http)
    try:
        for name in urls:
            try:
                health = await transport.health(name)
            except TransportError as exc:
                warn(f"the {name} service at {urls[name]} does not answer yet ({exc})")
                continue
            if health.get("service") != name:
                raise ConfigError(
                    f"{urls[name]} serves the {health.get('service')!r} service, not {name!r}"
                )
    except BaseException:
        await transport.close()
        raise
    return transport
