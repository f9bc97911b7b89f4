"""`ordersaga up`: the whole distributed topology on this machine, with one command.

It creates (if missing) one PostgreSQL database for the saga log and one per service, then
starts as child processes, on loopback::

    ordersaga serve inventory|shipping|payment   base port + 1, + 2, + 3 (each its own database)
    ordersaga serve api                          base port (the order intake API)
    ordersaga worker  x N                        (claiming sagas from the shared log)

waits until every one is ready (the services' and the API's ``/health``, each worker's first
stats snapshot), prints where everything is and how to use it, and stays in the foreground,
relaying the children's output with a ``[name]`` prefix (or to files with ``--log-dir``). A child
that dies is reported; the others keep running (kill a worker and watch the others take its
sagas over). A worker that died is restarted under a new id (``NAME-r1``, ``NAME-r2``...), after
a backoff that grows while it keeps dying (:func:`restart_delay`). SIGINT (Ctrl-C), SIGTERM or
SIGHUP stops everything in order — the API and the workers
first (the workers hand back their leases), then the services — each with SIGTERM, a wait, then
SIGKILL; a second signal kills at once. Children run in their own sessions, so a terminal's
Ctrl-C reaches only this process, which stops them in that order; on Linux they also die with
it should it be killed outright.

The databases are kept, so ``up`` again continues where the last one stopped (``--fresh``
starts over).

Secrets never go on a command line. The children get them through their environment:
``ORDERSAGA_SERVICE_TOKEN``, a random token made for this topology (the services require it,
the workers send it); ``ORDERSAGA_DATA_KEY``, the key sealing card numbers (the caller's own if
set, else ``PREFIX.data.key`` in the secrets dir, made on first use and kept with the
databases); ``ORDERSAGA_API_KEYS``, the API's keys file (the caller's if set, else
``PREFIX.api-keys`` in the secrets dir, made on first use with one key for the client ``demo``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import secrets
import signal
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg

from ordersaga.db import Database, open_database
from ordersaga.errors import ConfigError
from ordersaga.local.retention import DEFAULT_RETENTION, PruneSettings, periodic_prune
from ordersaga.saga.store import open_store

__all__ = [
    "SupervisorSettings",
    "Topology",
    "UpSettings",
    "ensure_databases",
    "pick_ports",
    "plan",
    "run_up",
    "service_children",
    "supervised",
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


@dataclass(frozen=True, slots=True)
class SupervisorSettings:
    """What the supervisor itself needs: where the output goes, how long to wait."""

    log_dir: Path | None = None
    startup_timeout: float = 60.0
    stop_timeout: float = 15.0  # per group (API and workers, then services)
    log_format: str = "text"

    @classmethod
    def of(cls, settings: UpSettings) -> SupervisorSettings:
        return cls(
            settings.log_dir, settings.startup_timeout, settings.stop_timeout, settings.log_format
        )


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
    return env


def topology_data_key(topology: Topology) -> bytes:
    """The data key the topology's children use (theirs, or the caller's environment's)."""
    from ordersaga.local.datakey import DATA_KEY_ENV, parse_key

    text = topology.env.get(DATA_KEY_ENV) or os.environ.get(DATA_KEY_ENV, "")
    return parse_key(text, f"${DATA_KEY_ENV}")


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    """Linux: the child gets SIGTERM should ``up`` die without stopping it (PR_SET_PDEATHSIG)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)


class _Supervisor:
    def __init__(self, settings: SupervisorSettings, topology: Topology, err: TextIO) -> None:
        self.settings = settings
        self.topology = topology
        self.err = err
        self.stopping = False
        self.killed: list[str] = []

    @contextlib.asynccontextmanager
    async def running(
        self, stop: asyncio.Event | None = None, hurry: asyncio.Event | None = None
    ) -> AsyncIterator[None]:
        """Start the services, then the rest, each group once the one before is ready; stop
        them all (into ``killed``) on the way out. ``stop`` set during startup cuts it short."""
        stop = stop or asyncio.Event()
        try:
            services = [c for c in self.topology.children if c.name in SERVICES]
            for child in services:
                await self.start(child)
            await _until(self.wait_ready(services), stop)
            rest = [c for c in self.topology.children if c.name not in SERVICES]
            for child in rest:
                await self.start(child)
            await _until(self.wait_ready(rest), stop)
            yield
        finally:
            self.killed = await self.stop(hurry or asyncio.Event())

    def say(self, message: str) -> None:
        if self.settings.log_format == "json":
            self.err.write(_json_line("up", {"event": "message", "message": message}) + "\n")
        else:
            self.err.write(f"ordersaga up: {message}\n")
        self.err.flush()

    async def start(self, child: Child) -> None:
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        env.pop("ORDERSAGA_CRASH_AT", None)
        env.update(self.topology.env)
        log_dir = self.settings.log_dir
        output: Any = asyncio.subprocess.PIPE
        if log_dir is not None:
            output = (log_dir / f"{child.name}.log").open("ab")
        try:
            child.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "ordersaga",
                *child.args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=output,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        finally:
            if log_dir is not None:
                output.close()
        if child.proc.stdout is not None:
            child.relay = asyncio.create_task(self._relay(child, child.proc.stdout))

    async def _relay(self, child: Child, stream: asyncio.StreamReader) -> None:
        json_lines = self.settings.log_format == "json"
        while line := await stream.readline():
            text = line.decode(errors="replace").rstrip()
            if json_lines:
                self.err.write(_json_line(child.name, _as_object(text)) + "\n")
            else:
                self.err.write(f"[{child.name}] {text}\n")
            self.err.flush()

    async def wait_ready(self, children: list[Child]) -> None:
        deadline = time.monotonic() + self.settings.startup_timeout
        pending = list(children)
        async with aiohttp.ClientSession(trust_env=False) as http:
            while pending:
                for child in list(pending):
                    assert child.proc is not None
                    if child.proc.returncode is not None:
                        raise ConfigError(
                            f"{child.name} exited during startup (status"
                            f" {child.proc.returncode}); see its output above"
                        )
                    if await _ready(http, child):
                        pending.remove(child)
                if pending and time.monotonic() > deadline:
                    late = ", ".join(c.name for c in pending)
                    raise ConfigError(
                        f"not ready after {self.settings.startup_timeout:g} s: {late}"
                    )
                if pending:
                    await asyncio.sleep(0.05)

    async def watch(self, child: Child) -> None:
        """Report a child that dies; a worker is restarted (see :func:`restart_delay`)."""
        quick_deaths = 0
        while True:
            assert child.proc is not None
            started = time.monotonic()
            code = await child.proc.wait()
            if self.stopping:
                return
            hint = ""
            if child.ready_file is not None:
                hint = "; its sagas are taken over when its leases lapse"
            self.say(f"{child.name} (pid {child.proc.pid}) exited with status {code}{hint}")
            if child.ready_file is None:
                return
            ran = time.monotonic() - started
            quick_deaths = 1 if ran >= RESTART_RESET_S else quick_deaths + 1
            if not await self._restart(child, quick_deaths):
                return

    async def _restart(self, child: Child, attempt: int) -> bool:
        delay = restart_delay(attempt)
        self.say(f"restarting {child.name} in {delay:g} s (restart {attempt} in a row)")
        await asyncio.sleep(delay)
        if self.stopping:
            return False
        new_id = _renamed(child)
        await self.start(child)
        assert child.proc is not None
        if self.stopping:  # stop() began while it started: it must not outlive us
            with contextlib.suppress(ProcessLookupError):
                child.proc.send_signal(signal.SIGTERM)
            return False
        self.say(f"{child.name} restarted as worker {new_id} (pid {child.proc.pid})")
        return True

    async def stop(self, hurry: asyncio.Event) -> list[str]:
        """Stop the API and the workers, then the services; return who had to be killed."""
        self.stopping = True
        front = [c for c in self.topology.children if c.name not in SERVICES]
        back = [c for c in self.topology.children if c.name in SERVICES]
        killed: list[str] = []
        for group in (front, back):
            killed += await self._stop_group(group, hurry)
        for child in self.topology.children:
            if child.relay is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(child.relay, 2)
        return killed

    async def _stop_group(self, group: list[Child], hurry: asyncio.Event) -> list[str]:
        running = [c for c in group if c.proc is not None and c.proc.returncode is None]
        for child in running:
            assert child.proc is not None
            with contextlib.suppress(ProcessLookupError):
                child.proc.send_signal(signal.SIGTERM)
        waits = [c.proc.wait() for c in running if c.proc is not None]
        if waits:
            hurried: asyncio.Future[Any] = asyncio.ensure_future(hurry.wait())
            exited: asyncio.Future[Any] = asyncio.gather(*waits)
            await asyncio.wait(
                [exited, hurried],
                timeout=self.settings.stop_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
            hurried.cancel()
        killed = []
        for child in running:
            assert child.proc is not None
            if child.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    child.proc.kill()
                await child.proc.wait()
                killed.append(child.name)
        return killed


def _as_object(text: str) -> dict[str, Any]:
    """A child's JSON log line as it is, or any other line as a ``log`` event."""
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    return data if isinstance(data, dict) else {"event": "log", "message": text}


def _json_line(process: str, data: dict[str, Any]) -> str:
    return json.dumps({**data, "process": process}, ensure_ascii=False)


#: A worker that dies again and again waits longer each time before its restart, up to this.
RESTART_MAX_DELAY_S = 30.0
#: A worker that ran this long before dying is restarted at once again (its backoff resets).
RESTART_RESET_S = 60.0


def restart_delay(attempt: int) -> float:
    """Seconds before the ``attempt``-th restart in a row: 0.5, 1, 2, 4 ... up to 30."""
    return min(RESTART_MAX_DELAY_S, 0.5 * 2.0 ** max(0, attempt - 1))


def _renamed(child: Child) -> str:
    """Give a restarted worker an id of its own (``w1`` -> ``w1-r1``, ``w1-r2``...): the log
    then tells the dead process's leases and registration from the new one's."""
    child.restarts += 1
    at = child.args.index("--id") + 1
    child.args[at] = f"{child.name}-r{child.restarts}"
    return child.args[at]


async def _ready(http: aiohttp.ClientSession, child: Child) -> bool:
    if child.ready_file is not None:
        return child.ready_file.exists()
    assert child.health is not None
    try:
        async with http.get(child.health, timeout=aiohttp.ClientTimeout(total=1)) as response:
            return response.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


def _announce(topology: Topology, settings: UpSettings, out: TextIO) -> None:
    info = topology.describe()
    services = ",".join(f"{k}={v}" for k, v in topology.services.items())
    dbs = ",".join(f"{k}={v}" for k, v in topology.service_dbs.items())
    if settings.output == "json":
        out.write(json.dumps(info, sort_keys=True) + "\n")
    elif settings.output == "env":
        pids = " ".join(str(pid) for pid in info["pids"].values())
        for key, value in (
            ("ORDERSAGA_API", topology.api),
            ("ORDERSAGA_STORE", topology.store),
            ("ORDERSAGA_SERVICES", services),
            ("ORDERSAGA_SERVICE_DBS", dbs),
            ("ORDERSAGA_PIDS", pids),
        ):
            out.write(f"{key}='{value}'\n")
    else:
        lines = [
            f"ordersaga is up: {len(topology.workers)} workers on the saga log {topology.store}",
            f"  order API   {topology.api}   (OpenAPI: {topology.api}/docs)",
            *(f"  {name:<11} {url}" for name, url in topology.services.items()),
            "  metrics     GET /metrics on the API and each service; the workers':",
            *(f"              {topology.metrics[w]}" for w in topology.workers),
            "",
            "Submit orders through the API (with a key of the API keys file):",
            f"  KEY=$(awk '!/^#/{{print $1; exit}}' {_api_keys_file(topology)})",
            f'  curl -si {topology.api}/orders -H "Authorization: Bearer $KEY" \\',
            "    -H 'Content-Type: text/plain' --data-binary \\",
            "    'Order 1001, User 456, Items: [{A, 1}], Payment: PayPal,"
            " Address: 1 Main St, Paris, FR'",
            f"  curl -s -H \"Authorization: Bearer $KEY\" '{topology.api}/orders/1001?wait=5'",
            "or stream them with run (the workers execute them; it needs their data key):",
            "  ordersaga generate --orders 1000 \\",
            f"    | ordersaga run --submit-only --store {topology.store}{_key_file_flag(settings)}",
            "and check the invariants:",
            f"  ordersaga audit --store {topology.store} --service-dbs {dbs}",
            "",
            "Ctrl-C stops everything.",
        ]
        out.write("\n".join(lines) + "\n")
    out.flush()


#: A closed terminal (SIGHUP) stops `up` as cleanly as Ctrl-C or SIGTERM.
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _api_keys_file(topology: Topology) -> str:
    return str(topology.api_keys) if topology.api_keys else "$ORDERSAGA_API_KEYS"


def _key_file_flag(settings: UpSettings) -> str:
    if os.environ.get("ORDERSAGA_DATA_KEY"):
        return ""  # run finds the key where up found it
    return f" --key-file {(settings.secrets_dir or Path('.')) / f'{settings.prefix}.data.key'}"


async def run_up(settings: UpSettings, out: TextIO, err: TextIO) -> int:
    """Start the topology, serve until SIGINT/SIGTERM, stop it; 0 after a clean stop."""
    with contextlib.ExitStack() as stack:
        state_dir = settings.log_dir
        if state_dir is not None:
            state_dir.mkdir(parents=True, exist_ok=True)
        else:
            temp = tempfile.TemporaryDirectory(prefix="ordersaga-up-")
            state_dir = Path(stack.enter_context(temp))
        topology = plan(settings, state_dir)
        databases = (topology.store, *topology.service_dbs.values())
        await ensure_databases(settings, [urlsplit(url).path.lstrip("/") for url in databases])
        return await _supervise(settings, topology, out, err)


async def _supervise(settings: UpSettings, topology: Topology, out: TextIO, err: TextIO) -> int:
    supervisor = _Supervisor(SupervisorSettings.of(settings), topology, err)
    stop, hurry = asyncio.Event(), asyncio.Event()

    def on_signal() -> None:
        (hurry if stop.is_set() else stop).set()

    loop = asyncio.get_running_loop()
    for sig in _STOP_SIGNALS:
        loop.add_signal_handler(sig, on_signal)
    watchers: list[asyncio.Task[None]] = []
    code = 0
    try:
        async with supervisor.running(stop, hurry):
            if not stop.is_set():
                watchers = [asyncio.create_task(supervisor.watch(c)) for c in topology.children]
                _announce(topology, settings, out)
                async with _pruning(settings, topology, supervisor.say):
                    await stop.wait()
                supervisor.say("stopping (Ctrl-C again to kill at once)")
    except ConfigError as exc:
        supervisor.say(str(exc))
        code = 1
    finally:
        for watcher in watchers:
            watcher.cancel()
        for sig in _STOP_SIGNALS:
            loop.remove_signal_handler(sig)
    killed = supervisor.killed
    if killed:
        supervisor.say(f"killed after {settings.stop_timeout:g} s: {', '.join(killed)}")
    supervisor.say("stopped")
    return code


@contextlib.asynccontextmanager
async def _pruning(
    settings: UpSettings, topology: Topology, say: Callable[[str], None]
) -> AsyncIterator[None]:
    """Prune the log and the service databases every so often while the block runs."""
    if settings.retention is None:
        yield
        return
    store = await open_store(topology.store)
    dbs: dict[str, Database] = {}
    try:
        for name, url in topology.service_dbs.items():
            dbs[name] = await open_database(url, pool_size=2)
        async with periodic_prune(store, dbs, PruneSettings(settings.retention), warn=say):
            yield
    finally:
        await store.close()
        for db in dbs.values():
            await db.close()


@contextlib.asynccontextmanager
async def supervised(
    topology: Topology, err: TextIO, settings: SupervisorSettings | None = None
) -> AsyncIterator[Topology]:
    """``topology`` running (ready) inside the block, stopped in order on the way out; a child
    that fails to start raises ConfigError. Its databases must exist already."""
    supervisor = _Supervisor(settings or SupervisorSettings(), topology, err)
    async with supervisor.running():
        yield topology


async def _until(work: Any, stop: asyncio.Event) -> None:
    """Await ``work`` unless ``stop`` is set first (then cancel it)."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([task, stopped], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if task.done():
        task.result()
    else:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
