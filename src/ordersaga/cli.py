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
        "--max-attempts",
        type=_positive_int,
        default=None,
        help="attempts per step before probing the service (default 10)",
    )

    audit = commands.add_parser("audit", help="check the invariants of a data dir")
    _add_data_dir(audit)
    audit.add_argument("--json", action="store_true", help="print the report as JSON")
    audit.add_argument("--store", help="saga log URL (default: sqlite in the data dir)")

    generate = commands.add_parser("generate", help="print a generated stream of orders")
    generate.add_argument("--orders", type=_positive_int, default=3000)
    generate.add_argument("--seed", type=_int, default=7)
    generate.add_argument("--world", type=Path, help="world file (default: the demo world)")
    return parser


def _add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", type=Path, default=Path(DEFAULT_DATA_DIR), help="databases live here"
    )


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
    from ordersaga.saga.crash import CrashPoints
    from ordersaga.saga.executor import EngineSettings
    from ordersaga.saga.retry import ACTION_POLICY

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
    )
    options = RunOptions(
        settings,
        concurrency=args.concurrency,
        ordered=not args.unordered,
        json_lines=args.json,
        verbose=args.verbose,
        progress=sys.stderr.isatty(),
    )
    try:
        err: Any = _CurrentStderr()
        report = asyncio.run(run_orders(options, lines_from(stream), sys.stdout, err))
    except RunAborted as exc:
        _fail(sys.stderr, f"run aborted: {exc}; the data dir is consistent: run again to resume")
        return EXIT_FAILED
    for line in report.lines():
        sys.stderr.write(line + "\n")
    return EXIT_DATAERR if report.counts.unreadable else EXIT_OK


def _cmd_audit(args: argparse.Namespace) -> int:
    from ordersaga.app.audit import audit_data_dir, format_report

    report = asyncio.run(audit_data_dir(args.data_dir, store_url=args.store))
    sys.stdout.write(format_report(report, as_json=args.json))
    return EXIT_OK if report.ok else EXIT_FAILED


def _cmd_generate(args: argparse.Namespace) -> int:
    from ordersaga.orders.demo import demo_world
    from ordersaga.orders.generate import generate_orders
    from ordersaga.orders.world import World

    world = _load_world(args.world) or demo_world()
    assert isinstance(world, World)
    for line in generate_orders(args.orders, seed=args.seed, world=world):
        sys.stdout.write(line + "\n")
    return EXIT_OK
