"""`ordersaga worker`: a process executing the sagas of a shared PostgreSQL log."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ordersaga.cli.args import (
    EXIT_OK,
    UsageError,
    add_key_file,
    add_order_deadline,
    add_token_file,
    any_service_map,
    data_key,
    integer,
    positive_float,
    positive_int,
    probability,
    saga_ref,
    service_token,
)
from ordersaga.cli.observability import add_telemetry_options, telemetry_settings
from ordersaga.cli.retention import add_retention


def register(commands: Any) -> None:
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


def _cmd_worker(args: argparse.Namespace) -> int:
    import dataclasses

    from ordersaga.cluster.worker import WorkerSettings, default_worker_id
    from ordersaga.cluster.workerproc import run_worker
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
    from ordersaga.local.tuning import run_loop, tune_gc

    tune_gc()
    run_loop(run_worker(settings, sys.stderr))
    return EXIT_OK
