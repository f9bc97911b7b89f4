"""`ordersaga run`: a stream of orders through the order saga, one outcome line each."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

from ordersaga.cli.args import (
    EXIT_DATAERR,
    EXIT_FAILED,
    EXIT_OK,
    CurrentStderr,
    UsageError,
    add_data_dir,
    add_key_file,
    add_order_deadline,
    add_service_options,
    add_token_file,
    data_key,
    fail,
    integer,
    load_world,
    open_input,
    positive_float,
    positive_int,
    probability,
    service_token,
)
from ordersaga.cli.observability import add_telemetry_options, telemetry_settings
from ordersaga.errors import AccessRefused, ExecutorFenced, StorageIOError

SUBMIT_ONLY_HELP = (
    "create each saga in the --store PostgreSQL log and wait for the workers' outcome"
    " instead of running it here (see 'ordersaga worker')"
)


def register(commands: Any) -> None:
    run = commands.add_parser("run", help="process a stream of orders, one outcome line each")
    run.add_argument("orders", nargs="?", default="-", help="order file, or - for stdin")
    add_data_dir(run)
    run.add_argument("--world", type=Path, help="world file (default: the built-in demo world)")
    run.add_argument("--concurrency", type=positive_int, default=32, help="sagas in flight")
    run.add_argument("--fault-rate", type=probability, default=0.0, help="injected fault rate")
    run.add_argument("--seed", type=integer, default=None, help="seed for fault injection")
    run.add_argument("--unordered", action="store_true", help="print outcomes as sagas end")
    run.add_argument("--json", action="store_true", help="one JSON object per request")
    run.add_argument("-v", "--verbose", action="store_true", help="each failure's reason")
    run.add_argument("--store", help="saga log URL (default: sqlite in the data dir)")
    run.add_argument(
        "--stats-file", type=Path, metavar="PATH", help="keep live run counters in this JSON file"
    )
    run.add_argument(
        "--max-attempts",
        type=positive_int,
        default=None,
        help="attempts per step before probing the service (default 10)",
    )
    run.add_argument(
        "--attention-after",
        type=positive_float,
        default=30.0,
        metavar="SECONDS",
        help="flag a saga for attention when its compensation or confirmation keeps failing"
        " this long",
    )
    add_service_options(run, http=True)
    add_order_deadline(run)
    add_key_file(run, "the data dir's data.key, made on first use")
    add_token_file(run, "sent to the services (--services)")
    run.add_argument("--submit-only", action="store_true", help=SUBMIT_ONLY_HELP)
    add_telemetry_options(run, log_format=False)
    run.set_defaults(handler=cmd_run)


def check_submit_only(args: argparse.Namespace) -> None:
    """`run --submit-only` leaves services, faults and retries to the workers."""
    if not (args.store or "").startswith(("postgresql://", "postgres://")):
        raise UsageError("--submit-only needs --store postgresql://... (the workers' saga log)")
    for flag, given in (
        ("--services", args.services),
        ("--service-dbs", args.service_dbs),
        ("--fault-rate", args.fault_rate),
        ("--max-attempts", args.max_attempts is not None),
        ("--world", args.world is not None),
    ):
        if given:
            raise UsageError(
                f"{flag} does not apply to --submit-only: the workers and the services own it"
                " (see 'ordersaga worker' and 'ordersaga serve')"
            )


def cmd_run(args: argparse.Namespace) -> int:
    from ordersaga.local.pipeline import RunAborted
    from ordersaga.local.run import RunOptions, lines_from, run_orders
    from ordersaga.local.runtime import RuntimeSettings
    from ordersaga.local.tuning import run_loop, tune_gc
    from ordersaga.saga.crash import CrashPoints
    from ordersaga.saga.executor import EngineSettings
    from ordersaga.saga.retry import ACTION_POLICY
    from ordersaga.transport.http import HttpSettings

    if args.submit_only:
        check_submit_only(args)
    if args.services and args.service_dbs:
        raise UsageError(
            "--service-dbs and --services exclude each other: HTTP services"
            " open their own databases"
        )
    engine = EngineSettings(
        attention_after=args.attention_after, order_deadline=args.order_deadline
    )
    if args.max_attempts is not None:
        policy = dataclasses.replace(ACTION_POLICY, maximum_attempts=args.max_attempts)
        engine = dataclasses.replace(engine, action_policy=policy)
    world = load_world(args.world)
    stream = open_input(args.orders)
    settings = RuntimeSettings(
        data_dir=args.data_dir,
        world=world,  # type: ignore[arg-type]
        fault_rate=args.fault_rate,
        seed=args.seed,
        store_url=args.store,
        crash=CrashPoints.parse(os.environ.get("ORDERSAGA_CRASH_AT")),
        engine=engine,
        service_urls=args.service_dbs,
        http_services=args.services,
        http=HttpSettings(
            connect_timeout=args.connect_timeout,
            read_timeout=args.read_timeout,
            token=service_token(args),
        ),
        telemetry=telemetry_settings(args, "ordersaga-run"),
        data_key=data_key(args),
    )
    options = RunOptions(
        settings,
        concurrency=args.concurrency,
        ordered=not args.unordered,
        json_lines=args.json,
        verbose=args.verbose,
        progress=sys.stderr.isatty(),
        stats_file=args.stats_file,
    )
    try:
        err: Any = CurrentStderr()
        tune_gc()
        runner = run_orders
        if args.submit_only:
            from ordersaga.cluster.submit import submit_orders as runner
        report = run_loop(runner(options, lines_from(stream), sys.stdout, err))
    except RunAborted as exc:
        if isinstance(
            exc.__cause__, ExecutorFenced | StorageIOError | OSError | AccessRefused
        ):  # a closed stdout too
            raise  # its own exit status (see cli.main)
        fail(f"run aborted: {exc}; the data dir is consistent: run again to resume")
        return EXIT_FAILED
    for line in report.lines():
        sys.stderr.write(line + "\n")
    return EXIT_DATAERR if report.counts.unreadable else EXIT_OK
