"""Builds the parser from every command group and runs the handler the arguments name."""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import traceback
from collections.abc import Callable

from ordersaga import __version__
from ordersaga.cli import dashboard, local, ops, proving, retention, serve, up, worker
from ordersaga.cli.args import (
    EXIT_FAILED,
    EXIT_FENCED,
    EXIT_INTERRUPTED,
    EXIT_IOERR,
    EXIT_OK,
    EXIT_SOFTWARE,
    EXIT_USAGE,
    Parser,
    UsageError,
    fail,
)
from ordersaga.errors import (
    AccessRefused,
    ConfigError,
    ExecutorFenced,
    OrderSagaError,
    StorageIOError,
)

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="ordersaga", description="A saga orchestrator for order processing.")
    parser.add_argument("--version", action="version", version=f"ordersaga {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    commands.required = True
    for group in (local, serve, worker, up, ops, dashboard, proving, retention):
        group.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        handler: Handler = args.handler
        return handler(args)
    except BrokenPipeError:
        return _stdout_closed()
    except BaseException as exc:
        return _exit_status(exc)


def _stdout_closed() -> int:
    # The reader of our output went away (e.g. `| head`): not an error of ours. Later writes
    # (the interpreter's final flush) go nowhere instead of raising again.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return EXIT_OK


def _exit_status(error: BaseException) -> int:
    """One line on stderr for ``error`` and the exit status it means (see cli.args)."""
    exc = _root_cause(error)
    try:
        raise exc
    except UsageError as exc:
        fail(f"usage error: {exc}")
        return EXIT_USAGE
    except ConfigError as exc:
        fail(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        fail("interrupted; run again with the same arguments to resume")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return _stdout_closed()
    except ExecutorFenced as exc:
        fail(f"lost the right to execute: {exc}; stopped (run again once the other executor ends)")
        return EXIT_FENCED
    except StorageIOError as exc:
        fail(f"I/O error: {exc}")
        return EXIT_IOERR
    except OrderSagaError as exc:
        fail(f"error: {exc}")
        return EXIT_FAILED
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        fail(f"I/O error{where}: {exc.strerror or exc}")
        return EXIT_IOERR
    except sqlite3.Error as exc:
        fail(f"I/O error: sqlite: {exc}")
        return EXIT_IOERR
    except Exception as exc:
        if os.environ.get("ORDERSAGA_DEBUG"):
            traceback.print_exception(exc)
        fail(f"internal error (a bug, please report it): {type(exc).__name__}: {exc}")
        return EXIT_SOFTWARE


def _root_cause(exc: BaseException) -> BaseException:
    """The error that a wrapper (a run aborted by its first failure) was caused by."""
    from ordersaga.local.pipeline import RunAborted

    while isinstance(exc, RunAborted) and exc.__cause__ is not None:
        cause = exc.__cause__
        if not isinstance(cause, ExecutorFenced | StorageIOError | OSError | AccessRefused):
            break
        exc = cause
    return exc
