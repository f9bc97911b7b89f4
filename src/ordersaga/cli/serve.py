"""`ordersaga serve`: one participant service over HTTP, or the order intake API (``serve api``)."""

from __future__ import annotations

import argparse
import asyncio
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
    data_key,
    is_loopback,
    load_world,
    port,
    positive_float,
    positive_int,
    service_token,
)
from ordersaga.cli.dashboard import TOKEN_ENV, operator_token
from ordersaga.cli.observability import add_telemetry_options, telemetry_settings

API_KEYS_ENV = "ORDERSAGA_API_KEYS"


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
        " (default: $ORDERSAGA_SERVICE_TOKEN); for the API, the operator token the dashboard at"
        f" /ui requires to show anything and to act (default: ${TOKEN_ENV})",
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
        help="serve a service on a non-loopback address without a service token; for the API,"
        " serve the dashboard at /ui read-only to anyone without an operator token",
    )
    serve.set_defaults(handler=_cmd_serve)


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
    from ordersaga.local.tuning import run_loop, tune_gc

    tune_gc()
    run_loop(serve(settings))
    return EXIT_OK


def _cmd_serve_api(args: argparse.Namespace) -> int:
    from ordersaga.cluster.api import create_api
    from ordersaga.cluster.serve import run_server
    from ordersaga.cluster.submit import open_pg_store
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
    ui = _api_dashboard(operator_token(args.token_file), args.insecure)

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


def _api_dashboard(token: str | None, insecure: bool) -> Any:
    """The settings of the dashboard at /ui of the API (see ordersaga.cluster.api), or None."""
    from ordersaga.dashboard import DashboardSettings

    if token is not None:
        return DashboardSettings(token=token, private=True)
    if insecure:
        sys.stderr.write(
            "ordersaga: warning: --insecure: the dashboard at /ui shows every order to anyone"
            " who reaches this port (read-only)\n"
        )
        return DashboardSettings()
    sys.stderr.write(
        f"ordersaga: the dashboard at /ui is off: it needs an operator token (${TOKEN_ENV}"
        " or --token-file)\n"
    )
    return None


def _limits(args: argparse.Namespace) -> Any:
    from ordersaga.cluster.edges import EdgeLimits

    return EdgeLimits(header_timeout=args.header_timeout, max_connections=args.max_connections)
