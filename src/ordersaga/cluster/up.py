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
``PREFIX.api-keys`` in the secrets dir, made on first use with one key for the client ``demo``);
``ORDERSAGA_OPERATOR_TOKEN``, the token of the dashboard at the API's ``/ui`` (the caller's if
set, else read from ``PREFIX.operator-token`` in the secrets dir, made on first use).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

from ordersaga.cluster.supervisor import Supervisor, SupervisorSettings
from ordersaga.cluster.topology import Topology, UpSettings, ensure_databases, plan
from ordersaga.db import Database, open_database
from ordersaga.errors import ConfigError
from ordersaga.local.retention import PruneSettings, periodic_prune
from ordersaga.saga.store import open_store

__all__ = ["run_up"]


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
            f"  dashboard   {topology.api}/ui/   (sign in with the operator token:"
            f" {topology.operator_token or '$ORDERSAGA_OPERATOR_TOKEN'})",
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
    supervisor = Supervisor(SupervisorSettings.of(settings), topology, err)
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
