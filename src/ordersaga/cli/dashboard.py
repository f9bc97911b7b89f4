"""`ordersaga dashboard`: the web UI on a saga log (a data dir's, or one named by URL)."""

from __future__ import annotations

import argparse
import asyncio
import os
import stat
import sys
from pathlib import Path
from typing import Any

from ordersaga.cli.args import (
    EXIT_OK,
    UsageError,
    add_data_dir,
    is_loopback,
    port,
    positive_float,
)

TOKEN_ENV = "ORDERSAGA_OPERATOR_TOKEN"
DEFAULT_PORT = 8080


def register(commands: Any) -> None:
    dashboard = commands.add_parser(
        "dashboard",
        help="serve the web dashboard on a saga log (read-only without an operator token)",
    )
    add_data_dir(dashboard)
    dashboard.add_argument(
        "--store",
        metavar="URL",
        help="the saga log's URL (postgresql://... or sqlite:///FILE) instead of the data dir's",
    )
    dashboard.add_argument("--host", default="127.0.0.1", help="address to listen on")
    dashboard.add_argument(
        "--port", type=port, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})"
    )
    dashboard.add_argument(
        "--refresh",
        type=positive_float,
        default=3.0,
        metavar="SECONDS",
        help="how often the overview refreshes in the browser",
    )
    add_token_file(dashboard)
    dashboard.add_argument(
        "--insecure",
        action="store_true",
        help="listen on a non-loopback address without an operator token (anyone who reaches"
        " it reads the whole saga log)",
    )
    dashboard.add_argument(
        "--log-level",
        choices=("critical", "error", "warning", "info", "debug"),
        default="warning",
        help="server log level",
    )
    dashboard.add_argument("--access-log", action="store_true", help="log every request")
    dashboard.set_defaults(handler=_cmd_dashboard)


def add_token_file(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--token-file",
        type=Path,
        metavar="FILE",
        help=f"a file holding the operator token that enables retry/resolve/cancel in the UI,"
        f" and that every read needs on a non-loopback address (or set {TOKEN_ENV}; never on"
        " the command line)",
    )


def operator_token(token_file: Path | None) -> str | None:
    """The operator token from ``--token-file`` or the environment; None: read-only."""
    if token_file is None:
        token = os.environ.get(TOKEN_ENV)
        if token is not None and not token.strip():
            raise UsageError(f"{TOKEN_ENV} is set but empty")
        return None if token is None else token.strip()
    try:
        text = token_file.read_text(encoding="utf-8")
        mode = token_file.stat().st_mode
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--token-file {token_file}: cannot read it: {exc}") from None
    token = text.strip()
    if not token or "\n" in token:
        raise UsageError(f"--token-file {token_file}: it must hold the token on one line")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        sys.stderr.write(
            f"ordersaga: warning: --token-file {token_file} is readable by others (chmod 600 it)\n"
        )
    return token


def _cmd_dashboard(args: argparse.Namespace) -> int:
    from ordersaga.cluster.serve import run_server
    from ordersaga.dashboard import DashboardSettings, OwnLog, create_dashboard

    token = operator_token(args.token_file)
    # Off this machine, the dashboard is the operator's only: every read needs the token too.
    private = token is not None and not is_loopback(args.host)
    if token is None and not is_loopback(args.host) and not args.insecure:
        raise UsageError(
            f"refusing to serve the dashboard on {args.host} without an operator token: set"
            f" {TOKEN_ENV} or --token-file (or pass --insecure)"
        )
    log = OwnLog(Path(args.data_dir), args.store)  # ConfigError: no such log (nothing created)
    settings = DashboardSettings(token=token, private=private, refresh_seconds=args.refresh)
    app = create_dashboard(log, settings)
    mode = "operator actions enabled" if token else "read-only"
    mode += ", sign-in required to read" if private else ""
    sys.stderr.write(
        f"ordersaga: dashboard of {log.description} ({mode}) on http://{args.host}:{args.port}/\n"
    )
    asyncio.run(
        run_server(
            app,
            "dashboard",
            host=args.host,
            port=args.port,
            log_level=args.log_level,
            access_log=args.access_log,
        )
    )
    return EXIT_OK
