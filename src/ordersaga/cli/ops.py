"""Operating sagas: `sagas list|show|retry|resolve|cancel` and `workers`."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from ordersaga.cli.args import (
    EXIT_OK,
    UsageError,
    add_data_dir,
    duration,
    positive_int,
)
from ordersaga.errors import ConfigError

STATUSES = ("running", "compensating", "confirming", "confirmed", "failed")
PAGE = 500


def register(commands: Any) -> None:
    sagas = commands.add_parser(
        "sagas", help="inspect and repair sagas: list, show, retry, resolve, cancel"
    )
    actions = sagas.add_subparsers(dest="sagas_command", metavar="ACTION", parser_class=type(sagas))
    actions.required = True
    _add_list(actions)
    _add_show(actions)
    _add_repairs(actions)
    workers = commands.add_parser(
        "workers", help="the workers of a shared PostgreSQL saga log and their liveness"
    )
    workers.add_argument(
        "--store", required=True, metavar="URL", help="the saga log: postgresql://..."
    )
    workers.add_argument("--live", action="store_true", help="only the live workers")
    workers.add_argument("--json", action="store_true", help="one JSON object per worker")
    workers.set_defaults(handler=_cmd_workers)


def _add_log(parser: argparse.ArgumentParser) -> None:
    add_data_dir(parser)
    parser.add_argument(
        "--store",
        metavar="URL",
        help="the saga log's URL (postgresql://... or sqlite:///FILE) instead of the data dir's",
    )


def _add_list(actions: Any) -> None:
    listing = actions.add_parser("list", help="sagas, newest first (read-only)")
    _add_log(listing)
    listing.add_argument("--status", choices=STATUSES, help="only sagas in this status")
    listing.add_argument(
        "--needs-attention", action="store_true", help="only sagas flagged for attention"
    )
    listing.add_argument(
        "--older-than",
        type=duration,
        metavar="DURATION",
        help="only sagas unchanged for longer than DURATION (0s, 90s, 15m, 36h, 7d)",
    )
    listing.add_argument(
        "--limit", type=positive_int, metavar="N", help="at most N sagas (default: all)"
    )
    listing.add_argument("--json", action="store_true", help="one JSON object per saga")
    listing.set_defaults(handler=_cmd_list)


def _add_show(actions: Any) -> None:
    show = actions.add_parser("show", help="one saga's whole timeline (read-only)")
    show.add_argument("id", help="the saga's (order's) id")
    _add_log(show)
    show.add_argument("--json", action="store_true", help="one JSON object, with a steps list")
    show.set_defaults(handler=_cmd_show)


def _add_repairs(actions: Any) -> None:
    helps = {
        "retry": "resume an unfinished saga now: clear its attention flag and its lease",
        "resolve": "close a saga a person settled by hand (never against the log's decision)",
        "cancel": "compensate a saga that is not decided yet",
    }
    for name, text in helps.items():
        parser = actions.add_parser(name, help=text)
        parser.add_argument("id", help="the saga's (order's) id")
        _add_log(parser)
        if name == "resolve":
            parser.add_argument(
                "--as",
                dest="outcome",
                required=True,
                choices=("failed", "confirmed"),
                help="the outcome the person brought about",
            )
        parser.add_argument("--note", required=name == "resolve", help="why (kept in the saga log)")
        parser.add_argument("--by", help="who acts, kept in the saga log (default: the OS user)")
        parser.add_argument("--json", action="store_true", help="print the saga as JSON after")
        parser.set_defaults(handler=_cmd_repair, repair=name)


def _run(work: Callable[[], Awaitable[int]]) -> int:
    return asyncio.run(work())  # type: ignore[arg-type]


def _open(args: argparse.Namespace, *, write: bool = False) -> Awaitable[Any]:
    from ordersaga.ops.access import open_log

    return open_log(Path(args.data_dir), args.store, write=write)


def _reading(args: argparse.Namespace) -> AbstractAsyncContextManager[Any]:
    from ordersaga.ops.access import reading_log

    return reading_log(Path(args.data_dir), args.store)


def _cmd_list(args: argparse.Namespace) -> int:
    from ordersaga.ops.render import print_sagas
    from ordersaga.ops.views import list_row
    from ordersaga.saga.store.base import SagaStatus
    from ordersaga.saga.store.operator import SagaFilter

    updated_before = None if args.older_than is None else time.time() - args.older_than

    async def work() -> int:
        rows: list[dict[str, Any]] = []
        async with _reading(args) as store:
            cursor: str | None = None
            left = args.limit
            while left is None or left > 0:
                query = SagaFilter(
                    status=None if args.status is None else SagaStatus(args.status),
                    needs_attention=True if args.needs_attention else None,
                    updated_before=updated_before,
                    limit=PAGE if left is None else min(PAGE, left),
                    cursor=cursor,
                )
                page = await store.list_sagas(query)
                for entry in page.entries:
                    row = list_row(entry)
                    if args.json:
                        sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
                    else:
                        rows.append(row)
                if left is not None:
                    left -= len(page.entries)
                cursor = page.next_cursor
                if cursor is None:
                    break
        if not args.json:
            print_sagas(sys.stdout, rows)
        sys.stdout.flush()
        return EXIT_OK

    return _run(work)


def _cmd_show(args: argparse.Namespace) -> int:
    from ordersaga.ops.render import print_saga
    from ordersaga.ops.views import saga_view

    async def work() -> int:
        async with _reading(args) as store:
            entry = await store.inspect(args.id)
        if entry is None:
            raise ConfigError(f"no saga {args.id!r} in the saga log")
        _print_view(args, saga_view(entry), print_saga)
        return EXIT_OK

    return _run(work)


def _print_view(args: argparse.Namespace, view: dict[str, Any], printer: Any) -> None:
    if args.json:
        sys.stdout.write(json.dumps(view, ensure_ascii=False) + "\n")
    else:
        printer(sys.stdout, view)
    sys.stdout.flush()


def _cmd_repair(args: argparse.Namespace) -> int:
    from ordersaga.ops import repair
    from ordersaga.ops.render import print_saga
    from ordersaga.ops.views import saga_view

    who = args.by or repair.default_operator()
    if not who.strip() or (args.note is not None and not args.note.strip()):
        raise UsageError("--by and --note must not be blank")

    async def work() -> int:
        store = await _open(args, write=True)
        try:
            if args.repair == "retry":
                entry = await repair.retry(store, args.id, who, args.note)
            elif args.repair == "resolve":
                entry = await repair.resolve(store, args.id, args.outcome, who, args.note)
            else:
                entry = await repair.cancel(store, args.id, who, args.note)
        finally:
            await store.close()
        view = saga_view(entry)
        if not args.json:
            sys.stderr.write(
                f"ordersaga: saga {args.id}: {args.repair} recorded (by {who});"
                f" now {view['status']}\n"
            )
        _print_view(args, view, print_saga)
        return EXIT_OK

    return _run(work)


def _cmd_workers(args: argparse.Namespace) -> int:
    from ordersaga.cluster.submit import open_pg_store
    from ordersaga.ops.render import print_workers, worker_row
    from ordersaga.saga.store.registry import WorkerRegistry

    async def work() -> int:
        store = await open_pg_store(args.store, "workers", read_only=True)
        try:
            infos = await WorkerRegistry(store).workers(include_gone=not args.live)
        finally:
            await store.close()
        if args.json:
            for info in infos:
                sys.stdout.write(json.dumps(worker_row(info)) + "\n")
        else:
            print_workers(sys.stdout, infos)
        sys.stdout.flush()
        return EXIT_OK

    return _run(work)
