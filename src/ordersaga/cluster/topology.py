"""The plan of `ordersaga up`'s topology: its settings, databases, ports, secrets and child
processes (see :mod:`ordersaga.cluster.up`); nothing here starts anything.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import secrets
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from ordersaga.errors import ConfigError
from ordersaga.local.retention import DEFAULT_RETENTION

__all__ = [
    "Topology",
    "UpSettings",
    "ensure_databases",
    "pick_ports",
    "plan",
    "service_children",
    "topology_data_key",
]

SERVICES = ("inventory", "shipping", "payment")


_PREFIX = re.compile(r"^[a-z_][a-z0-9_]{0,40}$")


@dataclass(frozen=True, slots=True)
class UpSettings:
    pg_url: str
    workers: int = 3
    base_port: int = 8100  # 0: any free ports
    prefix: str = "ordersaga_up"
    fresh: bool = False
    world: Path | None = None
    concurrency: int = 32
    lease: float = 10.0
    fault_rate: float = 0.0
    seed: int | None = None
    log_dir: Path | None = None
    output: str = "text"  # text | env | json
    startup_timeout: float = 60.0
    stop_timeout: float = 15.0  # per group (API and workers, then services)
    worker_grace: float = 5.0
    api: bool = True  # False: no order API (the topology `bench --workers` drives)
    log_format: str = "text"  # json: every child logs JSON, and the relay keeps it JSON
    trace: bool = False  # --trace on every child
    #: Prune finished sagas older than this (log and service databases), periodically; None: never.
    retention: float | None = DEFAULT_RETENTION
    #: Where the data key and the API keys file are kept (0700); None: the state dir.
    secrets_dir: Path | None = None

    def __post_init__(self) -> None:
        if not _PREFIX.match(self.prefix):
            raise ConfigError(f"--prefix must be a lowercase SQL name, got {self.prefix!r}")
        if not self.pg_url.startswith(("postgresql://", "postgres://")):
            raise ConfigError(f"--pg must be a postgresql:// URL, got {self.pg_url!r}")
        if self.base_port and self.base_port + 3 > 65535:
            raise ConfigError("--base-port leaves no room for the three services")


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


@dataclass(slots=True)
class Child:
    name: str
    args: list[str]
    health: str | None = None  # URL answering 200 when ready
    ready_file: Path | None = None  # or: a file that appears when ready
    proc: asyncio.subprocess.Process | None = None
    relay: asyncio.Task[None] | None = None
    restarts: int = 0  # a worker: times it was restarted after dying


@dataclass(slots=True)
class Topology:
    api: str
    store: str
    services: dict[str, str]
    service_dbs: dict[str, str]
    workers: list[str]
    children: list[Child] = field(default_factory=list)
    metrics: dict[str, str] = field(default_factory=dict)  # process name -> its /metrics URL
    #: Secrets the children get in their environment (never in argv, never described).
    env: dict[str, str] = field(default_factory=dict, repr=False)
    api_keys: Path | None = None  # the API keys file, when this topology made it
    operator_token: Path | None = None  # the dashboard's operator token file, when made here

    def describe(self) -> dict[str, Any]:
        return {
            "api": self.api,
            "store": self.store,
            "services": self.services,
            "service_dbs": self.service_dbs,
            "workers": self.workers,
            "metrics": self.metrics,
            "pids": {c.name: c.proc.pid for c in self.children if c.proc is not None},
            "api_keys": None if self.api_keys is None else str(self.api_keys),
            "dashboard": f"{self.api}/ui/",
            "operator_token_file": self.operator_token and str(self.operator_token),
        }


async def ensure_databases(settings: UpSettings, names: list[str]) -> None:
    try:
        conn = await asyncpg.connect(settings.pg_url, timeout=10)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise ConfigError(f"cannot reach PostgreSQL at {settings.pg_url}: {exc}") from exc
    try:
        for name in names:
            if settings.fresh:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
                with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                    await conn.execute(f'CREATE DATABASE "{name}"')
    except asyncpg.PostgresError as exc:
        raise ConfigError(f"cannot create the databases on {settings.pg_url}: {exc}") from exc
    finally:
        await conn.close()


def pick_ports(base: int, count: int = 4) -> list[int]:
    """The API's port, the three services' and then the workers' metrics ports (free ones when
    ``base`` is 0)."""
    if base == 0:
        sockets = [socket.socket() for _ in range(count)]
        try:
            for sock in sockets:
                sock.bind(("127.0.0.1", 0))
            return [sock.getsockname()[1] for sock in sockets]
        finally:
            for sock in sockets:
                sock.close()
    ports = list(range(base, base + count))
    for port in ports:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                raise ConfigError(f"port {port} is in use (try another --base-port)") from None
    return ports


_QUIET = ["--log-level", "warning"]


def service_children(
    ports: dict[str, int], dbs: dict[str, str], world: Path | None = None
) -> list[Child]:
    """``ordersaga serve NAME`` on loopback for each service, each on its database."""
    children = []
    for name, port in ports.items():
        args = ["serve", name, "--port", str(port), "--db", dbs[name], *_QUIET]
        if world is not None:
            args += ["--world", str(world)]
        health = f"http://127.0.0.1:{port}/health"
        children.append(Child(name, args, health=health))
    return children


def plan(settings: UpSettings, state_dir: Path) -> Topology:
    """The databases, ports and child processes of ``settings`` (each worker's stats file in
    ``state_dir``); nothing is created or started yet."""
    names = {what: f"{settings.prefix}_{what}" for what in ("sagas", *SERVICES)}
    dbs = {what: _with_database(settings.pg_url, name) for what, name in names.items()}
    api_port, *service_ports = pick_ports(settings.base_port, 4 + settings.workers)
    service_ports, metrics_ports = service_ports[:3], service_ports[3:]
    ports = dict(zip(SERVICES, service_ports, strict=True))
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    api = f"http://127.0.0.1:{api_port}"
    topology = Topology(
        api,
        dbs["sagas"],
        urls,
        {name: dbs[name] for name in SERVICES},
        [f"{settings.prefix}-w{i}" for i in range(1, settings.workers + 1)],
    )
    telemetry = ["--log-format", settings.log_format] + (["--trace"] if settings.trace else [])
    topology.env = secrets_env(settings.secrets_dir or state_dir, settings.prefix, settings.api)
    if settings.api and "ORDERSAGA_API_KEYS" not in os.environ:
        topology.api_keys = Path(topology.env["ORDERSAGA_API_KEYS"])
    if settings.api and not os.environ.get(OPERATOR_TOKEN_ENV):
        topology.operator_token = operator_token_file(settings.secrets_dir or state_dir, settings)
    topology.children += service_children(ports, topology.service_dbs, settings.world)
    for child in topology.children:
        child.args += telemetry
    topology.metrics = {name: f"{url}/metrics" for name, url in urls.items()}
    if settings.api:
        api_args = ["serve", "api", "--port", str(api_port), "--store", topology.store, *_QUIET]
        topology.children.append(Child("api", [*api_args, *telemetry], health=f"{api}/health"))
        topology.metrics["api"] = f"{api}/metrics"
    services = ",".join(f"{name}={url}" for name, url in urls.items())
    for i, worker_id in enumerate(topology.workers):
        stats = state_dir / f"{worker_id}.json"
        args = ["worker", "--store", topology.store, "--services", services, "--id", worker_id]
        args += ["--concurrency", str(settings.concurrency), "--lease", f"{settings.lease:g}"]
        args += ["--grace", f"{settings.worker_grace:g}", "--stats-file", str(stats)]
        args += ["--metrics-port", str(metrics_ports[i]), *telemetry]
        topology.metrics[worker_id] = f"http://127.0.0.1:{metrics_ports[i]}/metrics"
        args += ["--retention", "off"]  # up prunes the log and the services itself
        if settings.fault_rate:
            args += ["--fault-rate", f"{settings.fault_rate:g}"]
        if settings.seed is not None:
            args += ["--seed", str(settings.seed + i)]
        topology.children.append(Child(worker_id, args, ready_file=stats))
    return topology


def secrets_env(directory: Path, prefix: str, api: bool) -> dict[str, str]:
    """The secrets of a topology as environment variables (see the module docstring)."""
    from ordersaga.cluster.apikeys import MIN_KEY_LENGTH
    from ordersaga.local.datakey import DATA_KEY_ENV, load_or_create_key_file

    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    env = {"ORDERSAGA_SERVICE_TOKEN": secrets.token_urlsafe(32)}
    if not os.environ.get(DATA_KEY_ENV):
        key = load_or_create_key_file(directory / f"{prefix}.data.key")
        env[DATA_KEY_ENV] = base64.b64encode(key).decode("ascii")
    if api and not os.environ.get("ORDERSAGA_API_KEYS"):
        path = directory / f"{prefix}.api-keys"
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with open(fd, "w", encoding="ascii") as f:
                f.write(f"{secrets.token_urlsafe(max(MIN_KEY_LENGTH, 32))} demo\n")
        env["ORDERSAGA_API_KEYS"] = str(path)
    if api and not os.environ.get(OPERATOR_TOKEN_ENV):
        token = directory / f"{prefix}.operator-token"  # operator_token_file
        if not token.exists():
            fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with open(fd, "w", encoding="ascii") as f:
                f.write(secrets.token_urlsafe(32) + "\n")
        env[OPERATOR_TOKEN_ENV] = token.read_text(encoding="ascii").strip()
    return env


OPERATOR_TOKEN_ENV = "ORDERSAGA_OPERATOR_TOKEN"


def operator_token_file(directory: Path, settings: UpSettings) -> Path:
    return directory / f"{settings.prefix}.operator-token"


def topology_data_key(topology: Topology) -> bytes:
    """The data key the topology's children use (theirs, or the caller's environment's)."""
    from ordersaga.local.datakey import DATA_KEY_ENV, parse_key

    text = topology.env.get(DATA_KEY_ENV) or os.environ.get(DATA_KEY_ENV, "")
    return parse_key(text, f"${DATA_KEY_ENV}")
