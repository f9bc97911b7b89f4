"""`ordersaga up`: the whole distributed topology on this machine, with one command."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from ordersaga.cli.args import (
    DEFAULT_DATA_DIR,
    integer,
    port,
    positive_float,
    positive_int,
    probability,
)
from ordersaga.cli.observability import add_telemetry_options
from ordersaga.cli.retention import add_retention


def register(commands: Any) -> None:
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


def _cmd_up(args: argparse.Namespace) -> int:
    from ordersaga.cluster.topology import UpSettings
    from ordersaga.cluster.up import run_up

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
