"""The proving tools: `audit`, `generate`, `chaos`, `bench`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from ordersaga.cli.args import (
    EXIT_FAILED,
    EXIT_OK,
    add_data_dir,
    add_service_options,
    int_list,
    integer,
    load_world,
    non_negative_int,
    positive_float,
    positive_int,
    probability,
)


def register(commands: Any) -> None:
    audit = commands.add_parser("audit", help="check the invariants of a data dir")
    add_data_dir(audit)
    audit.add_argument("--json", action="store_true", help="print the report as JSON")
    audit.add_argument("--store", help="saga log URL (default: sqlite in the data dir)")
    add_service_options(audit, http=False)
    audit.set_defaults(handler=_cmd_audit)

    generate = commands.add_parser("generate", help="print a generated stream of orders")
    generate.add_argument("--orders", type=positive_int, default=3000, help="order lines")
    generate.add_argument("--seed", type=integer, default=7, help="seeds the workload")
    generate.add_argument("--world", type=Path, help="world file (default: the demo world)")
    generate.add_argument(
        "--id-prefix",
        type=_id_prefix,
        default="o",
        help="order ids are PREFIX1, PREFIX2...: a new prefix makes a stream a running system"
        " has not seen",
    )
    generate.add_argument(
        "--no-malformed",
        action="store_true",
        help="no unreadable or invalid lines (every line is a well-formed order)",
    )
    generate.set_defaults(handler=_cmd_generate)
    _add_chaos_parser(commands)
    _add_bench_parser(commands)


def _add_chaos_parser(commands: Any) -> None:
    chaos = commands.add_parser(
        "chaos", help="soak test: kill and restart runs at random, then audit and report"
    )
    chaos.add_argument("--orders", type=positive_int, default=10_000, help="workload lines")
    chaos.add_argument("--fault-rate", type=probability, default=0.2, help="injected fault rate")
    chaos.add_argument("--kills", type=non_negative_int, default=20, help="SIGKILLs to survive")
    chaos.add_argument("--seed", type=integer, default=1, help="seeds workload, faults and kills")
    chaos.add_argument("--concurrency", type=positive_int, default=32, help="sagas in flight")
    chaos.add_argument(
        "--data-dir",
        type=Path,
        default=Path("./chaos-data"),
        help="the chaos dir (wiped first if it is one; default ./chaos-data)",
    )
    chaos.add_argument("--keep", action="store_true", help="keep the chaos dir after a pass")
    chaos.add_argument(
        "--prune-every",
        type=non_negative_int,
        default=0,
        metavar="N",
        help="after every N-th kill, run 'ordersaga prune --older-than 0s' alongside the next"
        " run (0: never)",
    )
    chaos.add_argument("--json", action="store_true", help="print the report as JSON")
    chaos.set_defaults(handler=_cmd_chaos)


def _add_bench_parser(commands: Any) -> None:
    bench = commands.add_parser(
        "bench", help="measure throughput, latency, retries, commits and memory end to end"
    )
    bench.add_argument("--orders", type=positive_int, default=20_000, help="orders per run")
    bench.add_argument(
        "--concurrency",
        type=int_list,
        default=(64,),
        metavar="N[,N...]",
        help="sagas in flight; a list runs once per value (default 64)",
    )
    bench.add_argument("--fault-rate", type=probability, default=0.0, help="injected fault rate")
    bench.add_argument("--seed", type=integer, default=1, help="seeds the workload and the faults")
    bench.add_argument("--items", type=positive_int, default=20, help="items in the catalogue")
    bench.add_argument(
        "--contention", type=probability, default=0.0, help="share of orders for one hot item"
    )
    bench.add_argument("--hot-stock", type=non_negative_int, help="the hot item's stock")
    for step in ("reserve", "ship", "pay"):
        bench.add_argument(
            f"--fail-{step}",
            type=probability,
            default=0.0,
            help=f"share of orders refused at the {step} step",
        )
    bench.add_argument(
        "--store", metavar="URL", help="saga log on this PostgreSQL server (a fresh database)"
    )
    durability = bench.add_mutually_exclusive_group()
    durability.add_argument(
        "--no-durability",
        dest="durability",
        action="store_const",
        const="none",
        help="in-memory saga log, services without fsync (the baseline)",
    )
    durability.add_argument(
        "--compare-durability",
        dest="durability",
        action="store_const",
        const="compare",
        help="run durable and --no-durability on the same workload; report the ratio",
    )
    bench.set_defaults(durability="durable")
    bench.add_argument(
        "--stream", action="store_true", help="generate orders as they are consumed; sample RSS"
    )
    bench.add_argument("--rss-every", type=positive_int, help="with --stream: RSS every N orders")
    bench.add_argument("--unordered", action="store_true", help="no output reordering")
    bench.add_argument("--tmp-dir", type=Path, help="where the fresh data dirs are made")
    bench.add_argument("--keep", action="store_true", help="keep the data dirs")
    bench.add_argument(
        "--http",
        action="store_true",
        help="also run with the services as 'ordersaga serve' processes, over HTTP",
    )
    bench.add_argument(
        "--workers",
        type=int_list,
        default=(),
        metavar="N[,N...]",
        help="also run with N worker processes per value (needs --store postgresql://...)",
    )
    bench.add_argument(
        "--worker-cpu",
        type=positive_float,
        metavar="CORES",
        help="with --workers: cap each worker process at CORES of CPU time (e.g. 0.1; Linux"
        " cgroup cpu controller, v1 or v2, needs root; the groups are removed afterwards). Only"
        " the workers are capped: the services, PostgreSQL and this submitter are not. The"
        " figures then show what each added worker adds while the workers are the bottleneck"
        " and the rest has capacity left (a stand-in for workers on cores of their own), not"
        " what the setup does uncapped. Pick a cap below what one worker uses uncapped, so it"
        " binds: the report gives each worker's share of throttled periods (near 1: capped)",
    )
    bench.add_argument("--json", action="store_true", help="one JSON object per run")
    bench.set_defaults(handler=_cmd_bench)


def _cmd_audit(args: argparse.Namespace) -> int:
    from ordersaga.proving.audit import audit_data_dir, format_report

    report = asyncio.run(
        audit_data_dir(args.data_dir, store_url=args.store, service_urls=args.service_dbs)
    )
    sys.stdout.write(format_report(report, as_json=args.json))
    return EXIT_OK if report.ok else EXIT_FAILED


def _id_prefix(text: str) -> str:
    if not text or len(text) > 40 or not all(c.isalnum() or c in "-_." for c in text):
        raise argparse.ArgumentTypeError(
            f"an id prefix is 1-40 letters, digits, '-', '_' or '.': {text!r}"
        )
    return text


def _cmd_generate(args: argparse.Namespace) -> int:
    from ordersaga.orders.demo import demo_world
    from ordersaga.orders.world import World
    from ordersaga.proving.generate import Mix, generate_orders

    world = load_world(args.world) or demo_world()
    assert isinstance(world, World)
    mix = Mix(malformed=0.0, invalid=0.0) if args.no_malformed else None
    lines = generate_orders(
        args.orders, seed=args.seed, world=world, mix=mix, id_prefix=args.id_prefix
    )
    for line in lines:
        sys.stdout.write(line + "\n")
    return EXIT_OK


def _cmd_chaos(args: argparse.Namespace) -> int:
    from ordersaga.proving.chaos import print_report, run_chaos
    from ordersaga.proving.chaosplan import ChaosOptions

    options = ChaosOptions(
        orders=args.orders,
        fault_rate=args.fault_rate,
        kills=args.kills,
        seed=args.seed,
        concurrency=args.concurrency,
        data_dir=args.data_dir,
        keep=args.keep,
        prune_every=args.prune_every,
    )

    def log(message: str) -> None:
        sys.stderr.write(f"ordersaga: {message}\n")
        sys.stderr.flush()

    report = run_chaos(options, log)
    print_report(report, sys.stdout, as_json=args.json)
    return EXIT_OK if report.ok else EXIT_FAILED


def _cmd_bench(args: argparse.Namespace) -> int:
    import json

    from ordersaga.local.tuning import run_loop, tune_gc
    from ordersaga.proving.bench import run_bench
    from ordersaga.proving.benchload import BenchOptions
    from ordersaga.proving.benchstats import format_reports

    options = BenchOptions(
        orders=args.orders,
        concurrency=args.concurrency,
        fault_rate=args.fault_rate,
        seed=args.seed,
        items=args.items,
        contention=args.contention,
        hot_stock=args.hot_stock,
        fail_reserve=args.fail_reserve,
        fail_ship=args.fail_ship,
        fail_pay=args.fail_pay,
        store=args.store,
        durability=args.durability,
        stream=args.stream,
        rss_every=args.rss_every or 0,
        ordered=not args.unordered,
        tmp_dir=args.tmp_dir,
        keep=args.keep,
        http=args.http,
        workers=args.workers,
        worker_cpu=args.worker_cpu,
    )

    def say(message: str) -> None:
        sys.stderr.write(f"ordersaga bench: {message}\n")
        sys.stderr.flush()

    tune_gc()
    reports = run_loop(run_bench(options, say))
    if args.json:
        for report in reports:
            sys.stdout.write(json.dumps(report.to_json()) + "\n")
    else:
        sys.stdout.write(format_reports(reports))
    return EXIT_OK
