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

from ordersaga.db.deployment import Member, bind_members, peek_members
from ordersaga.db.identity import fingerprint, redacted
from ordersaga.errors import ConfigError, TransportError
from ordersaga.local.datadir import SAGA_LOG, DataDir, Locations
from ordersaga.local.lock import DataDirLock
from ordersaga.local.telemetry import EngineTelemetry, TelemetrySettings
from ordersaga.orders.demo import demo_world
from ordersaga.orders.order_saga import order_saga
from ordersaga.orders.vault import CardVault
from ordersaga.orders.world import World, parse_world
from ordersaga.saga.crash import CrashPoints
from ordersaga.saga.executor import EngineSettings, SagaEngine
from ordersaga.saga.store import PostgresSagaStore, SqlSagaStore, open_store
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
    #: The data key sealing card fields; None: the data dir's own key file (made on first use).
    data_key: bytes | None = None

    def data_dir_components(self) -> tuple[str, ...]:
        """The components this setup keeps in the data dir (none: the data dir is not used)."""
        needed = [] if self.store_url else [SAGA_LOG]
        if not self.http_services:
            needed += [name for name in SERVICE_NAMES if name not in self.service_urls]
        return tuple(needed)


@dataclass(slots=True)
class Runtime:
    world: World
    services: Services | None  # None when the services are reached over HTTP
    store: SagaStore
    transport: Transport
    injector: FaultInjector | None
    engine: SagaEngine
    telemetry: EngineTelemetry
    vault: CardVault
    lock: DataDirLock | None = None  # the data dir's executor lock, released last

    async def close(self) -> None:
        """Deliver pending late requests, flush the log, close every database, unlock."""
        try:
            await self.transport.close()
            self.telemetry.close()
        finally:
            try:
                await self.store.close()
            finally:
                try:
                    if self.services is not None:
                        await self.services.close()
                finally:
                    if self.lock is not None:
                        self.lock.release()


def _locations(settings: RuntimeSettings) -> Locations:
    defaults = DataDir(settings.data_dir).locations()
    urls = {**defaults.service_urls, **settings.service_urls}
    return Locations(settings.store_url or defaults.store_url, urls)


def _world_of(settings: RuntimeSettings, data_dir: DataDir) -> World:
    """The data dir's world if it was initialised (a different --world is refused), else the
    given or demo world."""
    if not data_dir.exists():
        return settings.world or demo_world()
    stored = parse_world(data_dir.read_meta().world)
    if settings.world is not None and settings.world.to_json() != stored.to_json():
        raise ConfigError(
            f"--world is not the world data dir {settings.data_dir} was initialised from"
            f" (fingerprint {fingerprint(settings.world.to_json())}, the data dir's"
            f" {fingerprint(stored.to_json())}): leave --world out to continue it, or use"
            " another --data-dir"
        )
    return stored


async def open_runtime(
    settings: RuntimeSettings, warn: Callable[[str], None] = lambda _m: None
) -> Runtime:
    """Open everything a run needs, holding the data dir's executor lock if it uses it."""
    telemetry = EngineTelemetry(settings.telemetry)  # first: a bad tracing setup opens nothing
    data_dir = DataDir(settings.data_dir)
    needed = settings.data_dir_components()
    lock = None
    if needed:
        data_dir.prepare()
        lock = DataDirLock.acquire(data_dir.root)
    try:
        world = _world_of(settings, data_dir)
        if needed:
            await data_dir.open_for_writing(world.to_json(), needed)
        if settings.data_key is None and not needed:
            data_dir.prepare()  # for its key file only
        vault = CardVault(settings.data_key or data_dir.data_key())
        runtime = await _open_parts(settings, world, telemetry, vault, warn)
    except BaseException:
        telemetry.close()
        if lock is not None:
            lock.release()
        raise
    runtime.lock = lock
    return runtime


async def _open_parts(
    settings: RuntimeSettings,
    world: World,
    telemetry: EngineTelemetry,
    vault: CardVault,
    warn: Callable[[str], None],
) -> Runtime:
    locations = _locations(settings)
    services: Services | None = None
    transport: Transport
    if settings.http_services:
        if settings.world is not None:
            warn("--world does not reach services served over HTTP (each was seeded at start)")
        transport = await _http_transport(settings, warn)
    else:
        configs = ServiceConfigs(world.inventory, world.shipping, world.payment)
        services = await open_services(
            locations.service_urls,
            configs,
            durable=settings.durable,
            known=await peek_members(locations.store_url, SAGA_LOG),
            log=redacted(locations.store_url),
            check_world=settings.world is not None,  # a --world other than theirs: refused
        )
        transport = InProcessTransport(services.by_name())
    try:
        store = await open_store(
            locations.store_url, durable=settings.durable, crash=settings.crash
        )
        await _refuse_a_log_with_workers(store)
        try:
            members = list(services.members) if services else await http_members(transport)
            await bind_deployment(store, members)
        except BaseException:
            await store.close()
            raise
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
        [order_saga(vault)],
        rng=random.Random(settings.seed),
        crash=settings.crash,
        settings=settings.engine,
        observer=telemetry.observer,
    )
    telemetry.attach(engine)
    return Runtime(world, services, store, transport, injector, engine, telemetry, vault)


async def _refuse_a_log_with_workers(store: SagaStore) -> None:
    """An executing run and workers on one saga log would drive the same sagas at once."""
    if isinstance(store, PostgresSagaStore):
        try:
            await store.lock_executors(worker=False)
        except BaseException:
            await store.close()
            raise


async def bind_deployment(store: SagaStore, members: list[Member]) -> None:
    """Check the service databases against the saga log and bind the new ones (see
    :mod:`ordersaga.db.deployment`)."""
    if members and isinstance(store, SqlSagaStore):
        await bind_members(store.database, members)


async def http_members(transport: Transport) -> list[Member]:
    """The PostgreSQL databases of the services that answer over HTTP, as their ``/health``
    describes them (a service that does not answer is checked later)."""
    if not isinstance(transport, HttpTransport):
        return []
    members = []
    for name, url in transport.base_urls.items():
        try:
            health = await transport.health(name)
        except TransportError:
            continue
        database = health.get("database")
        if isinstance(database, dict):
            held = bool(database.get("records"))
            members.append(Member(name, database.get("id"), held, f"served at {url}"))
    return members


async def _http_transport(settings: RuntimeSettings, warn: Callable[[str], None]) -> Transport:
    return await connect_http_services(settings.http_services, settings.http, warn)


async def connect_http_services(
    urls: Mapping[str, str], http: HttpSettings, warn: Callable[[str], None]
) -> HttpTransport:
    """The HTTP transport to the services at ``urls``, after checking who answers where.

    A service that does not answer yet is only a warning (calls to it wait, like calls to a
    service that dies during the run); one that answers as another service, or refuses our
    service token, is a ConfigError.
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
            await transport.check_access(name)
    except BaseException:
        await transport.close()
        raise
    return transport
