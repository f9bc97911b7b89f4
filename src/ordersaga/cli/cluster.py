"""The distributed setup: `serve` (a service or the order API), `worker`, `up`."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import sys
from pathlib import Path
from typing import Any

from ordersaga.cli.args import (
    DEFAULT_DATA_DIR,
    EXIT_OK,
    SERVICES,
    UsageError,
    add_key_file,
    add_order_deadline,
    add_token_file,
    any_service_map,
    data_key,
    integer,
    load_world,
    port,
    positive_float,
    positive_int,
    probability,
    saga_ref,
    service_token,
)
from ordersaga.cli.dashboard import TOKEN_ENV, operator_token
from ordersaga.cli.observability import add_telemetry_options, telemetry_settings
from ordersaga.cli.retention import add_retention

API_KEYS_ENV = "ORDERSAGA_API_KEYS"


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only this machine (a loopback address, or localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_api_keys(path: str | Path | None) -> dict[str, str]:
    """The API keys file (``KEY CLIENT`` lines) as {key: client}; UsageError if unusable."""
    from ordersaga.cluster.apikeys import read_api_keys

    if not path:
        raise UsageError(
            f"serve api needs API keys: a file of 'KEY CLIENT' lines in ${API_KEYS_ENV}"
            " or --api-keys FILE"
        )
    return read_api_keys(Path(path))


def register(commands: Any) -> None:
    _add_serve_parser(commands)
    _add_worker_parser(commands)
    _add_up_parser(commands)


def _add_serve_parser(commands: Any) -> None:
    serve = commands.add_parser(
        "serve", help="serve one service, or the order API, over HTTP (uvicorn)"
    )
    serve.add_argument(
        "service", choices=(*SERVICES, "api"), help="the service to serve, or the order API"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument(
        "--port",
        type=port,
        help="port (default: inventory 8001, shipping 8002, payment 8003, api 8000)",
    )
    serve.add_argument("--store", help="api only: the saga log, postgresql://...")
    serve.add_argument(
        "--token-file",
        type=Path,
        metavar="FILE",
        help="the token this server requires, never on the command line: a service's bearer token"
        " (default: $ORDERSAGA_SERVICE_TOKEN); for the API, the operator token that enables"
        f" retry/resolve/cancel in the dashboard at /ui (default: ${TOKEN_ENV})",
    )
    serve.add_argument(
        "--db",
        help="the service's database URL: sqlite:///FILE or postgresql://... (default:"
        f" sqlite:///{DEFAULT_DATA_DIR.removeprefix('./')}/SERVICE.db)",
    )
    serve.add_argument("--world", type=Path, help="world file seeding a new database")
    serve.add_argument("--pool-size", type=positive_int, default=10, help="database pool size")
    serve.add_argument(
        "--log-level",
        choices=("critical", "error", "warning", "info", "debug"),
        default="info",
        help="server log level",
    )
    serve.add_argument("--access-log", action="store_true", help="log every request")
    add_telemetry_options(serve, metrics=False)
    add_key_file(serve, "none (api only: the key the workers use)")
    serve.add_argument(
        "--api-keys",
        type=Path,
        metavar="FILE",
        help="api only: a file of 'KEY CLIENT' lines (default: $ORDERSAGA_API_KEYS)",
    )
    serve.add_argument(
        "--header-timeout",
        type=positive_float,
        default=10.0,
        help="seconds a client has to send a request's headers",
    )
    serve.add_argument(
        "--max-connections",
        type=positive_int,
        default=1000,
        help="open connections at most (the oldest one still sending its headers makes room)",
    )
    serve.add_argument(
        "--insecure",
        action="store_true",
        help="serve a service on a non-loopback address without a service token",
    )
    serve.set_defaults(handler=_cmd_serve)


def _add_worker_parser(commands: Any) -> None:
    worker = commands.add_parser(
        "worker", help="execute the sagas of a shared PostgreSQL saga log (any number of workers)"
    )
    worker.add_argument("--store", required=True, help="the saga log: postgresql://...")
    worker.add_argument(
        "--services",
        type=any_service_map,
        required=True,
        metavar="SERVICE=URL,...",
        help="the HTTP base URL of every service (see 'ordersaga serve'): the three order"
        " services, and those the --saga definitions call",
    )
    worker.add_argument(
        "--saga",
        type=saga_ref,
        action="append",
        default=[],
        metavar="MODULE:NAME",
        help="also run this saga definition (a SagaDefinition importable from Python, e.g."
        " trip_saga:TRIP) beside the order saga; may be given several times",
    )
    worker.add_argument("--id", help="this worker's name in the log (default host:pid:random)")
    worker.add_argument("--concurrency", type=positive_int, default=32, help="sagas at once")
    worker.add_argument(
        "--lease", type=positive_float, default=10.0, help="seconds a claim holds a saga"
    )
    worker.add_argument(
        "--claim-batch", type=positive_int, default=16, help="sagas taken per claim at most"
    )
    worker.add_argument(
        "--poll", type=positive_float, default=0.25, help="seconds between idle claims"
    )
    worker.add_argument(
        "--grace",
        type=float,
        default=10.0,
        help="on SIGINT/SIGTERM, seconds to let running sagas finish before handing them back",
    )
    worker.add_argument("--fault-rate", type=probability, default=0.0, help="injected faults")
    add_order_deadline(worker)
    worker.add_argument("--seed", type=integer, default=None, help="seed for fault injection")
    worker.add_argument(
        "--max-attempts", type=positive_int, default=None, help="attempts per step (default 10)"
    )
    worker.add_argument(
        "--connect-timeout", type=positive_float, default=2.0, help="HTTP connect timeout (s)"
    )
    worker.add_argument(
        "--read-timeout", type=positive_float, default=10.0, help="HTTP read timeout (s)"
    )
    worker.add_argument(
        "--stats-file", type=Path, metavar="PATH", help="keep live worker counters in this file"
    )
    worker.add_argument(
        "--attention-after",
        type=positive_float,
        default=30.0,
        metavar="SECONDS",
        help="flag a saga for attention when its compensation or confirmation keeps failing"
        " this long",
    )
    add_telemetry_options(worker)
    add_retention(worker, "the saga log; see 'ordersaga prune'")
    add_key_file(worker, "none: one of them is needed")
    add_token_file(worker, "sent to the services")
    worker.set_defaults(handler=_cmd_worker)


def _add_up_parser(commands: Any) -> None:
    up = commands.add_parser(
        "up", help="start the whole topology locally: three services, the API, N workers"
    )
    up.add_argument(
        "--pg",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="a PostgreSQL server URL allowed to create databases (default %(default)s)",
    )
    up.add_argument("--workers", type=positive_int, default=3, help="worker processes")
    up.add_argument(
        "--base-port",
        type=port,
        default=8100,
        help="the API listens here, the services on the next three ports (0: any free ports)",
    )
    up.add_argument(
        "--prefix",
        default="ordersaga_up",
        help="database names: PREFIX_sagas, PREFIX_inventory, ... (default %(default)s)",
    )
    up.add_argument("--fresh", action="store_true", help="drop and recreate the databases first")
    up.add_argument("--world", type=Path, help="world file seeding new service databases")
    up.add_argument("--concurrency", type=positive_int, default=32, help="sagas per worker")
    up.add_argument("--lease", type=positive_float, default=10.0, help="worker lease (s)")
    up.add_argument("--fault-rate", type=probability, default=0.0, help="faults in the workers")
    up.add_argument("--seed", type=integer, default=None, help="seed for fault injection")
    up.add_argument(
        "--log-dir", type=Path, help="write each process's output to a file here (default: stderr)"
    )
    add_telemetry_options(up, metrics=False)
    up.add_argument(
        "--secrets-dir",
        type=Path,
        default=Path(DEFAULT_DATA_DIR) / "up",
        help="kept 0700: PREFIX.data.key (the data key, made on first use unless"
        " $ORDERSAGA_DATA_KEY is set) and PREFIX.api-keys (a client key for the API)",
    )
    output = up.add_mutually_exclusive_group()
    output.add_argument(
        "--print-env", action="store_true", help="print the URLs as shell variables when ready"
    )
    output.add_argument(
        "--json", action="store_true", help="print the topology as one JSON line when ready"
    )
    add_retention(up, "the saga log and the service databases; its workers prune nothing")
    up.set_defaults(handler=_cmd_up)


def _cmd_serve(args: argparse.Namespace) -> int:
    from ordersaga.cluster.serve import DEFAULT_PORTS, ServeSettings, serve
    from ordersaga.telemetry.logs import configure_logging

    configure_logging(args.log_format)

    if args.service == "api":
        return _cmd_serve_api(args)
    if args.store is not None:
        raise UsageError("--store is for 'serve api'; a service takes --db")
    if args.key_file is not None or args.api_keys is not None:
        raise UsageError("--key-file and --api-keys are for 'serve api'")
    token = service_token(args)
    if token is None and not is_loopback(args.host) and not args.insecure:
        raise UsageError(
            f"refusing to serve {args.service} on {args.host} without a service token: set"
            " ORDERSAGA_SERVICE_TOKEN or --token-file (or pass --insecure)"
        )
    db = args.db or f"sqlite:///{Path(DEFAULT_DATA_DIR) / f'{args.service}.db'}"
    settings = ServeSettings(
        service=args.service,
        db_url=db,
        host=args.host,
        port=DEFAULT_PORTS[args.service] if args.port is None else args.port,
        world=load_world(args.world),  # type: ignore[arg-type]
        pool_size=args.pool_size,
        log_level=args.log_level,
        access_log=args.access_log,
        log_format=args.log_format,
        tracing=telemetry_settings(args, f"ordersaga-{args.service}").tracing,
        token=token,
        limits=_limits(args),
    )
    asyncio.run(serve(settings))
    return EXIT_OK


def _cmd_worker(args: argparse.Namespace) -> int:
    import dataclasses

    from ordersaga.cluster.worker import WorkerSettings, default_worker_id, run_worker
    from ordersaga.orders.order_saga import ORDER_SAGA_NAME
    from ordersaga.saga.executor import EngineSettings
    from ordersaga.saga.retry import ACTION_POLICY
    from ordersaga.telemetry.logs import configure_logging
    from ordersaga.transport.http import HttpSettings

    if not args.store.startswith(("postgresql://", "postgres://")):
        raise UsageError("--store must be a postgresql:// URL: workers share the saga log")
    configure_logging(args.log_format)
    if args.grace < 0:
        raise UsageError("--grace must be at least 0")
    names = [ORDER_SAGA_NAME, *(definition.name for definition in args.saga)]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise UsageError(f"--saga: two saga definitions named {', '.join(map(repr, twice))}")
    engine = EngineSettings(
        attention_after=args.attention_after, order_deadline=args.order_deadline
    )
    if args.max_attempts is not None:
        policy = dataclasses.replace(ACTION_POLICY, maximum_attempts=args.max_attempts)
        engine = dataclasses.replace(engine, action_policy=policy)
    settings = WorkerSettings(
        store_url=args.store,
        services=args.services,
        worker_id=args.id or default_worker_id(),
        concurrency=args.concurrency,
        lease=args.lease,
        claim_batch=args.claim_batch,
        poll=args.poll,
        grace=args.grace,
        fault_rate=args.fault_rate,
        seed=args.seed,
        http=HttpSettings(
            connect_timeout=args.connect_timeout,
            read_timeout=args.read_timeout,
            token=service_token(args),
        ),
        engine=engine,
        stats_file=args.stats_file,
        sagas=tuple(args.saga),
        telemetry=telemetry_settings(args, "ordersaga-worker"),
        retention=args.retention,
        data_key=data_key(args),
    )
    asyncio.run(run_worker(settings, sys.stderr))
    return EXIT_OK


def _cmd_serve_api(args: argparse.Namespace) -> int:
    from ordersaga.cluster.api import create_api
    from ordersaga.cluster.serve import run_server
    from ordersaga.cluster.submit import open_pg_store
    from ordersaga.dashboard import DashboardSettings
    from ordersaga.dashboard.log import describe
    from ordersaga.telemetry.tracing import open_tracing

    if not (args.store or "").startswith(("postgresql://", "postgres://")):
        raise UsageError("serve api needs --store postgresql://... (the workers' saga log)")
    if args.db is not None or args.world is not None:
        raise UsageError("serve api takes --store, not --db or --world")
    key = data_key(args)
    if key is None:
        raise UsageError(
            "serve api needs the data key the workers use (ORDERSAGA_DATA_KEY or --key-file)"
        )
    clients = load_api_keys(args.api_keys or os.environ.get(API_KEYS_ENV))
    url = args.store
    ui = DashboardSettings(token=operator_token(args.token_file))

    async def opener() -> Any:
        return await open_pg_store(url, "serve api")

    port = 8000 if args.port is None else args.port
    tracing = open_tracing(telemetry_settings(args, "ordersaga-api").tracing)
    try:
        asyncio.run(
            run_server(
                create_api(opener, clients, key, tracing=tracing, ui=ui, log_name=describe(url)),
                "api",
                host=args.host,
                port=port,
                log_level=args.log_level,
                access_log=args.access_log,
                json_logs=args.log_format == "json",
                limits=_limits(args),
            )
        )
    finally:
        if tracing is not None:
            tracing.close()
    return EXIT_OK


def _limits(args: argparse.Namespace) -> Any:
    from ordersaga.cluster.edges import EdgeLimits

    return EdgeLimits(header_timeout=args.header_timeout, max_connections=args.max_connections)


def _cmd_up(args: argparse.Namespace) -> int:
    from ordersaga.cluster.up import UpSettings, run_up

    settings = UpSettings(
        pg_url=args.pg,
        workers=args.workers,
        base_port=args.base_port,
        prefix=args.prefix,
        fresh=args.fresh,
        world=args.world,
        concurrency=args.concurrency,
        lease=args.lease,
        fault_rate=args.fault_rate,
        seed=args.seed,
        log_dir=args.log_dir,
        output="env" if args.print_env else "json" if args.json else "text",
        log_format=args.log_format,
        trace=args.trace,
        retention=args.retention,
        secrets_dir=args.secrets_dir,
    )
    code: int = asyncio.run(run_up(settings, sys.stdout, sys.stderr))
    return code
