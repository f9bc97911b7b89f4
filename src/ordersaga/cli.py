"""Command-line entry point: argument parsing and printing only.

Exit statuses: 0 success; 1 the audit found violations, or a run was aborted; 2 usage errors
(with a one-line message, never a traceback); 65 some input lines could not be read at all;
130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
from pathlib import Path
from typing import Any, NoReturn, TextIO

from ordersaga import __version__
from ordersaga.errors import ConfigError, OrderSagaError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_DATAERR, EXIT_INTERRUPTED = 0, 1, 2, 65, 130
DEFAULT_DATA_DIR = "./ordersaga-data"


class UsageError(Exception):
    pass


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the time (a live progress display swaps it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, exit status 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text}")
    return value


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be within [0, 1]: {text}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    from ordersaga import cli_cluster as cluster  # it imports from here

    parser = _Parser(prog="ordersaga", description="A saga orchestrator for order processing.")
    parser.add_argument("--version", action="version", version=f"ordersaga {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    run = commands.add_parser("run", help="process a stream of orders, one outcome line each")
    run.add_argument("orders", nargs="?", default="-", help="order file, or - for stdin")
    _add_data_dir(run)
    run.add_argument("--world", type=Path, help="world file (default: the built-in demo world)")
    run.add_argument("--concurrency", type=_positive_int, default=32, help="sagas in flight")
    run.add_argument("--fault-rate", type=_probability, default=0.0, help="injected fault rate")
    run.add_argument("--seed", type=_int, default=None, help="seed for fault injection")
    run.add_argument("--unordered", action="store_true", help="print outcomes as sagas end")
    run.add_argument("--json", action="store_true", help="one JSON object per request")
    run.add_argument("-v", "--verbose", action="store_true", help="each failure's reason")
    run.add_argument("--store", help="saga log URL (default: sqlite in the data dir)")
    run.add_argument(
        "--stats-file", type=Path, metavar="PATH", help="keep live run counters in this JSON file"
    )
    run.add_argument(
        "--max-attempts",
        type=_positive_int,
        default=None,
        help="attempts per step before probing the service (default 10)",
    )
    _add_service_options(run, http=True)
    run.add_argument("--submit-only", action="store_true", help=cluster.SUBMIT_ONLY_HELP)

    audit = commands.add_parser("audit", help="check the invariants of a data dir")
    _add_data_dir(audit)
    audit.add_argument("--json", action="store_true", help="print the report as JSON")
    audit.add_argument("--store", help="saga log URL (default: sqlite in the data dir)")
    _add_service_options(audit, http=False)

    generate = commands.add_parser("generate", help="print a generated stream of orders")
    generate.add_argument("--orders", type=_positive_int, default=3000)
    generate.add_argument("--seed", type=_int, default=7)
    generate.add_argument("--world", type=Path, help="world file (default: the demo world)")
    _add_serve_parser(commands)
    cluster.add_parsers(commands)
    _add_chaos_parser(commands)
    _add_bench_parser(commands)
    return parser


def _add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", type=Path, default=Path(DEFAULT_DATA_DIR), help="databases live here"
    )


SERVICES = ("inventory", "shipping", "payment")


def _service_map(text: str) -> dict[str, str]:
    """``inventory=URL,shipping=URL,...``: a URL per service name."""
    urls: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, url = (x.strip() for x in part.partition("="))
        if not sep or not url:
            raise argparse.ArgumentTypeError(f"expected SERVICE=URL, got {part!r}")
        if name not in SERVICES:
            raise argparse.ArgumentTypeError(
                f"unknown service {name!r} (expected {', '.join(SERVICES)})"
            )
        if name in urls:
            raise argparse.ArgumentTypeError(f"service {name!r} given twice")
        urls[name] = url
    return urls


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number: {text}")
    return value


def _port(text: str) -> int:
    value = _int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be within [0, 65535]: {text}")
    return value


def _add_service_options(parser: argparse.ArgumentParser, *, http: bool) -> None:
    parser.add_argument(
        "--service-dbs",
        type=_service_map,
        default={},
        metavar="SERVICE=URL,...",
        help="a service's database URL (sqlite:///FILE or postgresql://...), overriding the"
        " data dir's file",
    )
    if not http:
        return
    parser.add_argument(
        "--services",
        type=_service_map,
        default={},
        metavar="SERVICE=URL,...",
        help="the HTTP base URL of every service (see 'ordersaga serve'): calls go over HTTP",
    )
    parser.add_argument(
        "--connect-timeout", type=_positive_float, default=2.0, help="HTTP connect timeout (s)"
    )
    parser.add_argument(
        "--read-timeout", type=_positive_float, default=10.0, help="HTTP read timeout (s)"
    )


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
        type=_port,
        help="port (default: inventory 8001, shipping 8002, payment 8003, api 8000)",
    )
    serve.add_argument("--store", help="api only: the saga log, postgresql://...")
    serve.add_argument(
        "--db",
        help="the service's database URL: sqlite:///FILE or postgresql://... (default:"
        f" sqlite:///{DEFAULT_DATA_DIR.removeprefix('./')}/SERVICE.db)",
    )
    serve.add_argument("--world", type=Path, help="world file seeding a new database")
    serve.add_argument("--pool-size", type=_positive_int, default=10, help="database pool size")
    serve.add_argument(
        "--log-level",
        choices=("critical", "error", "warning", "info", "debug"),
        default="info",
        help="server log level",
    )
    serve.add_argument("--access-log", action="store_true", help="log every request")


def _add_chaos_parser(commands: Any) -> None:
    chaos = commands.add_parser(
        "chaos", help="soak test: kill and restart runs at random, then audit and report"
    )
    chaos.add_argument("--orders", type=_positive_int, default=10_000, help="workload lines")
    chaos.add_argument("--fault-rate", type=_probability, default=0.2, help="injected fault rate")
    chaos.add_argument("--kills", type=_non_negative_int, default=20, help="SIGKILLs to survive")
    chaos.add_argument("--seed", type=_int, default=1, help="seeds workload, faults and kills")
    chaos.add_argument("--concurrency", type=_positive_int, default=32, help="sagas in flight")
    chaos.add_argument(
        "--data-dir",
        type=Path,
        default=Path("./chaos-data"),
        help="the chaos dir (wiped first if it is one; default ./chaos-data)",
    )
    chaos.add_argument("--keep", action="store_true", help="keep the chaos dir after a pass")
    chaos.add_argument("--json", action="store_true", help="print the report as JSON")


def _add_bench_parser(commands: Any) -> None:
    bench = commands.add_parser(
        "bench", help="measure throughput, latency, retries, commits and memory end to end"
    )
    bench.add_argument("--orders", type=_positive_int, default=20_000, help="orders per run")
    bench.add_argument(
        "--concurrency",
        type=_int_list,
        default=(64,),
        metavar="N[,N...]",
        help="sagas in flight; a list runs once per value (default 64)",
    )
    bench.add_argument("--fault-rate", type=_probability, default=0.0, help="injected fault rate")
    bench.add_argument("--seed", type=_int, default=1, help="seeds the workload and the faults")
    bench.add_argument("--items", type=_positive_int, default=20, help="items in the catalogue")
    bench.add_argument(
        "--contention", type=_probability, default=0.0, help="share of orders for one hot item"
    )
    bench.add_argument("--hot-stock", type=_non_negative_int, help="the hot item's stock")
    for step in ("reserve", "ship", "pay"):
        bench.add_argument(
            f"--fail-{step}",
            type=_probability,
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
    bench.add_argument("--rss-every", type=_positive_int, help="with --stream: RSS every N orders")
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
        type=_int_list,
        default=(),
        metavar="N[,N...]",
        help="also run with N worker processes per value (needs --store postgresql://...)",
    )
    bench.add_argument("--json", action="store_true", help="one JSON object per run")


def _int_list(text: str) -> tuple[int, ...]:
    return tuple(_positive_int(part) for part in text.split(","))


def _non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0: {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return _dispatch(args)
    except UsageError as exc:
        _fail(sys.stderr, f"usage error: {exc}")
        return EXIT_USAGE
    except ConfigError as exc:
        _fail(sys.stderr, str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        _fail(sys.stderr, "interrupted; run again with the same arguments to resume")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader of our output went away (e.g. `| head`): not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except OrderSagaError as exc:
        _fail(sys.stderr, f"error: {exc}")
        return EXIT_FAILED


def _fail(err: TextIO, message: str) -> None:
    err.write(f"ordersaga: {message}\n")
    err.flush()


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "run":
        return _cmd_run(args)
    if args.command == "audit":
        return _cmd_audit(args)
    if args.command == "generate":
        return _cmd_generate(args)
    if args.command == "serve":
        return _cmd_serve(args)
    from ordersaga import cli_cluster

    if args.command in cli_cluster.COMMANDS:
        return cli_cluster.dispatch(args)
    if args.command == "chaos":
        return _cmd_chaos(args)
    if args.command == "bench":
        return _cmd_bench(args)
    raise UsageError(f"unknown command {args.command!r}")  # pragma: no cover


def _load_world(path: Path | None) -> object:
    from ordersaga.orders.world import load_world

    return None if path is None else load_world(path)


def _open_input(name: str) -> object:
    if name == "-":
        return sys.stdin.buffer
    try:
        return open(name, "rb", buffering=0)
    except OSError as exc:
        raise ConfigError(f"cannot read orders file {name}: {exc.strerror}") from exc


def _cmd_run(args: argparse.Namespace) -> int:
    from ordersaga.app.pipeline import RunAborted
    from ordersaga.app.run import RunOptions, lines_from, run_orders
    from ordersaga.app.runtime import RuntimeSettings
    from ordersaga.app.tuning import tune_gc
    from ordersaga.saga.crash import CrashPoints
    from ordersaga.saga.executor import EngineSettings
    from ordersaga.saga.retry import ACTION_POLICY
    from ordersaga.transport.http import HttpSettings

    if args.submit_only:
        from ordersaga.cli_cluster import check_submit_only

        check_submit_only(args)
    if args.services and args.service_dbs:
        raise UsageError(
            "--service-dbs and --services exclude each other: HTTP services"
            " open their own databases"
        )
    engine = EngineSettings()
    if args.max_attempts is not None:
        policy = dataclasses.replace(ACTION_POLICY, maximum_attempts=args.max_attempts)
        engine = dataclasses.replace(engine, action_policy=policy)
    world = _load_world(args.world)
    stream = _open_input(args.orders)
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
        http=HttpSettings(connect_timeout=args.connect_timeout, read_timeout=args.read_timeout),
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
        err: Any = _CurrentStderr()
        tune_gc()
        runner = run_orders
        if args.submit_only:
            from ordersaga.app.submit import submit_orders as runner
        report = asyncio.run(runner(options, lines_from(stream), sys.stdout, err))
    except RunAborted as exc:
        _fail(sys.stderr, f"run aborted: {exc}; the data dir is consistent: run again to resume")
        return EXIT_FAILED
    for line in report.lines():
        sys.stderr.write(line + "\n")
    return EXIT_DATAERR if report.counts.unreadable else EXIT_OK


def _cmd_audit(args: argparse.Namespace) -> int:
    from ordersaga.app.audit import audit_data_dir, format_report

    report = asyncio.run(
        audit_data_dir(args.data_dir, store_url=args.store, service_urls=args.service_dbs)
    )
    sys.stdout.write(format_report(report, as_json=args.json))
    return EXIT_OK if report.ok else EXIT_FAILED


def _cmd_serve(args: argparse.Namespace) -> int:
    from ordersaga.app.serve import DEFAULT_PORTS, ServeSettings, serve

    if args.service == "api":
        from ordersaga.cli_cluster import cmd_serve_api

        return cmd_serve_api(args)
    if args.store is not None:
        raise UsageError("--store is for 'serve api'; a service takes --db")
    db = args.db or f"sqlite:///{Path(DEFAULT_DATA_DIR) / f'{args.service}.db'}"
    settings = ServeSettings(
        service=args.service,
        db_url=db,
        host=args.host,
        port=DEFAULT_PORTS[args.service] if args.port is None else args.port,
        world=_load_world(args.world),  # type: ignore[arg-type]
        pool_size=args.pool_size,
        log_level=args.log_level,
        access_log=args.access_log,
    )
    asyncio.run(serve(settings))
    return EXIT_OK


def _cmd_generate(args: argparse.Namespace) -> int:
    from ordersaga.orders.demo import demo_world
    from ordersaga.orders.generate import generate_orders
    from ordersaga.orders.world import World

    world = _load_world(args.world) or demo_world()
    assert isinstance(world, World)
    for line in generate_orders(args.orders, seed=args.seed, world=world):
        sys.stdout.write(line + "\n")
    return EXIT_OK


def _cmd_chaos(args: argparse.Namespace) -> int:
    from ordersaga.app.chaos import ChaosOptions, print_report, run_chaos

    options = ChaosOptions(
        orders=args.orders,
        fault_rate=args.fault_rate,
        kills=args.kills,
        seed=args.seed,
        concurrency=args.concurrency,
        data_dir=args.data_dir,
        keep=args.keep,
    )

    def log(message: str) -> None:
        sys.stderr.write(f"ordersaga: {message}\n")
        sys.stderr.flush()

    report = run_chaos(options, log)
    print_report(report, sys.stdout, as_json=args.json)
    return EXIT_OK if report.ok else EXIT_FAILED


def _cmd_bench(args: argparse.Namespace) -> int:
    import json

    from ordersaga.app.bench import BenchOptions, run_bench
    from ordersaga.app.benchstats import format_reports
    from ordersaga.app.tuning import tune_gc

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
    )

    def say(message: str) -> None:
        sys.stderr.write(f"ordersaga bench: {message}\n")
        sys.stderr.flush()

    tune_gc()
    reports = asyncio.run(run_bench(options, say))
    if args.json:
        for report in reports:
            sys.stdout.write(json.dumps(report.to_json()) + "\n")
    else:
        sys.stdout.write(format_reports(reports))
    return EXIT_OK
