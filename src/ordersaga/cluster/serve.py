"""`ordersaga serve SERVICE`: one participant service as its own HTTP process (uvicorn).

The service opens its own database by URL (SQLite file or PostgreSQL database), seeding a new
one from the world (the built-in demo world by default); an existing database keeps its state.
Several processes may serve one PostgreSQL database at once (replicas): optimistic locking and
the idempotency records live in the database, not in the process.

The server stops gracefully on SIGINT or SIGTERM: it stops accepting connections, lets
requests in progress finish, closes the database and returns (exit status 0). A SIGKILL loses
nothing either: each command commits atomically with its idempotency record, or not at all.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import uvicorn

from ordersaga.cluster.edges import EdgeLimits, guarded_protocol
from ordersaga.errors import ConfigError
from ordersaga.orders.demo import demo_world
from ordersaga.orders.world import World
from ordersaga.participant.http import DEFAULT_MAX_BODY_BYTES, create_app
from ordersaga.services.factory import SERVICE_NAMES, ServiceConfigs, open_service
from ordersaga.telemetry.tracing import TracingSettings, open_tracing

__all__ = ["DEFAULT_PORTS", "ServeSettings", "run_server", "serve"]

#: Each service's default port, so three `serve` commands without --port do not collide.
DEFAULT_PORTS = {"inventory": 8001, "shipping": 8002, "payment": 8003}
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


@dataclass(frozen=True, slots=True)
class ServeSettings:
    service: str
    db_url: str
    host: str = "127.0.0.1"
    port: int = 8000
    world: World | None = None  # seeds a new database; None: the built-in demo world
    pool_size: int = 10
    log_level: str = "info"
    access_log: bool = False
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    log_format: str = "text"  # json: uvicorn's records as JSON objects (telemetry.logs)
    tracing: TracingSettings = field(default_factory=TracingSettings)
    #: Every request but /health and /metrics must carry it as a bearer token (None: none).
    token: str | None = field(default=None, repr=False)
    limits: EdgeLimits = field(default_factory=EdgeLimits)

    def __post_init__(self) -> None:
        if self.service not in SERVICE_NAMES:
            raise ConfigError(
                f"unknown service {self.service!r} (expected one of {', '.join(SERVICE_NAMES)})"
            )
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be within [0, 65535], got {self.port}")
        if self.pool_size < 1:
            raise ConfigError("pool size must be at least 1")
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(f"log level must be one of {', '.join(LOG_LEVELS)}")


async def serve(settings: ServeSettings) -> None:
    """Open the service, serve it until SIGINT/SIGTERM, then close its database."""
    world = settings.world or demo_world()
    configs = ServiceConfigs(world.inventory, world.shipping, world.payment)
    tracing = open_tracing(settings.tracing)
    service = await open_service(
        settings.service,
        settings.db_url,
        configs,
        pool_size=settings.pool_size,
        check_world=settings.world is not None,  # a --world other than the database's: refused
    )
    try:
        app = create_app(
            service,
            name=settings.service,
            max_body_bytes=settings.max_body_bytes,
            tracing=tracing,
            token=settings.token,
        )
        await run_server(
            app,
            settings.service,
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level,
            access_log=settings.access_log,
            json_logs=settings.log_format == "json",
            limits=settings.limits,
        )
    finally:
        try:
            await service.close()
        finally:
            if tracing is not None:
                tracing.close()


async def run_server(
    app: Any,
    what: str,
    *,
    host: str,
    port: int,
    log_level: str,
    access_log: bool,
    json_logs: bool = False,
    limits: EdgeLimits | None = None,
) -> None:
    """Serve the ASGI ``app`` with uvicorn until SIGINT/SIGTERM (a graceful stop), within the
    edge ``limits`` (:mod:`ordersaga.cluster.edges`).

    With ``json_logs`` uvicorn keeps its hands off logging: its records reach the root
    logger's JSON handler (see :func:`ordersaga.telemetry.logs.configure_logging`).
    """
    extra: dict[str, Any] = {"log_config": None} if json_logs else {}
    limits = limits or EdgeLimits()
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=access_log,
        **extra,
        lifespan="on",
        server_header=False,
        proxy_headers=False,
        http=guarded_protocol(limits),
        timeout_keep_alive=limits.keep_alive,
    )
    server = uvicorn.Server(config)
    try:
        with _quiet_signal_replay():
            await server.serve()
    except SystemExit:
        # uvicorn exits when it cannot start (it has logged why, e.g. the port is taken).
        raise ConfigError(f"{what}: cannot serve on {host}:{port}") from None


@contextmanager
def _quiet_signal_replay() -> Iterator[None]:
    """Keep uvicorn's replay of the stop signal from killing us before the database closes.

    After a graceful shutdown, uvicorn raises the signal that stopped it again, for the handler
    that was installed before it started: with this no-op handler the process returns normally.
    """

    def ignore(_signum: int, _frame: FrameType | None) -> None:
        return None

    if threading.current_thread() is not threading.main_thread():
        yield  # uvicorn installs no signal handlers outside the main thread either
        return
    saved = {sig: signal.signal(sig, ignore) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
