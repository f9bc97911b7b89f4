"""Builds the parser from every command group and runs the handler the arguments name."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from ordersaga import __version__
from ordersaga.cli import cluster, dashboard, local, ops, proving
from ordersaga.cli.args import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    Parser,
    UsageError,
    fail,
)
from ordersaga.errors import ConfigError, OrderSagaError

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="ordersaga", description="A saga orchestrator for order processing.")
    parser.add_argument("--version", action="version", version=f"ordersaga {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    commands.required = True
    for group in (local, cluster, ops, dashboard, proving):
        group.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        handler: Handler = args.handler
        return handler(args)
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
        # The reader of our output went away (e.g. `| head`): not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except OrderSagaError as exc:
        fail(f"error: {exc}")
        return EXIT_FAILED
