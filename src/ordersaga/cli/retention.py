"""Retention: `prune`, and the `--retention` option of long-running commands."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from pathlib import Path
from typing import Any

from ordersaga.cli.args import EXIT_OK, add_data_dir, add_service_options

#: Seconds per unit of a DURATION.
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
DEFAULT_RETENTION_TEXT = "7d"


def duration(text: str) -> float:
    """A DURATION such as ``0s``, ``90m``, ``36h``, ``7d``, ``2w`` or ``1d12h``, in seconds."""
    compact = text.strip().lower()
    if not compact or _DURATION.sub("", compact):
        raise argparse.ArgumentTypeError(
            f"not a duration: {text!r} (expected e.g. 0s, 90m, 36h, 7d)"
        )
    return sum(float(n) * _UNITS[unit] for n, unit in _DURATION.findall(compact))


def retention(text: str) -> float | None:
    """``--retention``: a DURATION, or ``off`` (None) to prune nothing."""
    if text.strip().lower() == "off":
        return None
    return duration(text)


def add_retention(parser: argparse.ArgumentParser, what: str) -> None:
    """The ``--retention`` option of a long-running command (documented default: 7 days)."""
    parser.add_argument(
        "--retention",
        type=retention,
        default=retention(DEFAULT_RETENTION_TEXT),
        metavar="DURATION|off",
        help=f"keep a finished saga whole this long, then prune it ({what}; 'off': never;"
        f" default {DEFAULT_RETENTION_TEXT})",
    )


def register(commands: Any) -> None:
    prune = commands.add_parser(
        "prune",
        help="remove what finished sagas no longer need and give the space back",
        description="Compact every finished saga older than --older-than to its compact record"
        " (id, fingerprint, outcome, decided-at: resubmissions still replay, reused ids still"
        " fail) and delete, in the service databases, the records and rows of finished sagas"
        " older than both --older-than and the message-age limit plus its margin. Never touches"
        " an unfinished saga or one flagged for attention.",
    )
    add_data_dir(prune)
    prune.add_argument("--store", help="saga log URL (default: sqlite in the data dir)")
    add_service_options(prune, http=False)
    prune.add_argument(
        "--older-than",
        type=duration,
        default=duration(DEFAULT_RETENTION_TEXT),
        metavar="DURATION",
        help=f"prune sagas finished longer ago than this, e.g. 0s, 36h, 7d"
        f" (default {DEFAULT_RETENTION_TEXT})",
    )
    prune.add_argument("--dry-run", action="store_true", help="count, change nothing")
    prune.add_argument("--json", action="store_true", help="print the report as JSON")
    prune.set_defaults(handler=_cmd_prune)


def _cmd_prune(args: argparse.Namespace) -> int:
    from ordersaga.local.retention import PruneSettings, prune_locations

    settings = PruneSettings(older_than=args.older_than, dry_run=args.dry_run)
    data_dir: Path = args.data_dir
    report = asyncio.run(
        prune_locations(data_dir, settings, store_url=args.store, service_urls=args.service_dbs)
    )
    if args.json:
        sys.stdout.write(json.dumps(report.to_json(), sort_keys=True) + "\n")
    else:
        sys.stdout.write(f"prune: {report.summary()}\n")
    return EXIT_OK
