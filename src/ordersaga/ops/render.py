"""The operator views for people: a table of sagas, one saga's timeline, a table of workers.

Plain text when the output is not a terminal (rich drops colours and keeps the layout), wide
enough that a pipe or a file gets whole lines.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, TextIO

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ordersaga.saga.store.registry import WorkerInfo

__all__ = ["console", "print_saga", "print_sagas", "print_workers", "worker_row"]

_COLOURS = {"confirmed": "green", "failed": "red", "running": "cyan"}


def console(out: TextIO) -> Console:
    terminal = out.isatty()
    return Console(file=out, width=None if terminal else 200, highlight=False, soft_wrap=False)


def _short(stamp: str | None) -> str:
    return "-" if stamp is None else stamp.replace("T", " ").removesuffix("Z")


def _status(row: dict[str, Any]) -> str:
    status = str(row["status"])
    colour = _COLOURS.get(str(row.get("outcome") or status), "yellow")
    flag = " [bold yellow]![/]" if row.get("needs_attention") else ""
    return f"[{colour}]{status}[/]{flag}"


def print_sagas(out: TextIO, rows: Sequence[dict[str, Any]]) -> None:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("order", "status", "step", "attempts", "created", "updated", "reason"):
        table.add_column(column, no_wrap=column != "reason")
    for row in rows:
        step = row["current_step"] or (f"{row['step']} ({row['cause']})" if row["cause"] else "")
        reason = row["reason"] or ""
        if row.get("attention_reason"):
            reason = "; ".join(filter(None, (f"! {row['attention_reason']}", reason)))
        table.add_row(
            escape(str(row["order_id"])),
            _status(row),
            escape(step or "-"),
            str(row["attempts"]),
            _short(row["created_at"]),
            _short(row["updated_at"]),
            escape(reason),
        )
    target = console(out)
    target.print(table)
    needing = sum(bool(row["needs_attention"]) for row in rows)
    attention = f", {needing} need attention (!)" if needing else ""
    target.print(f"{len(rows)} sagas{attention}")


def print_saga(out: TextIO, view: dict[str, Any]) -> None:
    target = console(out)
    decision = view["decision"]
    decided = f"decided {decision['outcome']} at {_short(decision['at'])}" if decision else ""
    name = escape(f"{view['order_id']} ({view['definition']})")
    target.print(f"[bold]saga {name}[/]: {_status(view)}")
    target.print(f"  created {_short(view['created_at'])}, updated {_short(view['updated_at'])}")
    if decided:
        target.print(f"  {decided}")
    if view["reason"]:
        cause = f" [{view['cause']}]" if view["cause"] else ""
        target.print(escape(f"  reason: {view['reason']}{cause}"))
    if view["current_step"]:
        target.print(escape(f"  at step: {view['current_step']}"))
    if view["needs_attention"]:
        why = escape(f": {view['attention_reason']}") if view["attention_reason"] else ""
        target.print(f"  [bold yellow]needs attention[/]{why}")
    if view["worker"]:
        lease = f" (lease until {_short(view['lease_until'])})" if view["lease_until"] else ""
        target.print(escape(f"  worker: {view['worker']}{lease}"))
    target.print(f"  retries {view['retries']}, compensations {view['compensations']}")
    steps = Table(box=None, header_style="bold", pad_edge=False, title_justify="left")
    for column in ("step", "phase", "result", "attempts", "started", "ms", "reason"):
        steps.add_column(column, no_wrap=column != "reason")
    for step in view["steps"]:
        result = step["result"] + (" (probed)" if step["probed"] else "")
        duration = "-" if step["duration_ms"] is None else f"{step['duration_ms']:.1f}"
        steps.add_row(
            step["step"],
            step["phase"],
            result,
            str(step["attempt_count"]),
            _short(step["started_at"]),
            duration,
            escape(step["reason"] or ""),
        )
        _add_trail(steps, step)
    target.print(steps if view["steps"] else "  no step has run")
    for action in view["actions"]:
        note = f": {action['note']}" if action["note"] else ""
        line = f"  {_short(action['at'])} {action['who']} {action['action']}{note}"
        target.print(escape(line))


def _add_trail(table: Table, step: dict[str, Any]) -> None:
    """Under a step's row, one row per attempt and probe, in the order they happened."""
    if len(step["attempts"]) < 2 and not step["probes"]:
        return  # one attempt: the step's own row says it all
    entries = [("attempt", a["at"], a) for a in step["attempts"]]
    entries += [("probe", p["at"], p) for p in step["probes"]]
    entries.sort(key=lambda entry: entry[1] or "")
    number = 0
    for kind, at, entry in entries:
        if kind == "attempt":
            number += 1
            label, result, note = f"  attempt {number}", entry["result"], entry["error"] or ""
        else:
            label, result, note = "  probe", f"found {entry['found']}", ""
        table.add_row(
            label, "", result, "", _short(at), f"{entry['duration_ms']:.1f}", escape(note)
        )


def _ago(seconds: float) -> str:
    return f"{seconds:.1f} s ago" if seconds < 120 else f"{seconds / 60:.0f} min ago"


def worker_row(info: WorkerInfo) -> dict[str, Any]:
    return {
        "worker_id": info.worker_id,
        "host": info.host,
        "pid": info.pid,
        "state": info.state,
        "live": info.live,
        "started_at": _iso(info.started_at),
        "heartbeat_at": _iso(info.heartbeat_at),
        "heartbeat_age_s": round(info.now - info.heartbeat_at, 3),
        "sagas_held": info.held,
    }


def _iso(epoch: float) -> str:
    stamp = dt.datetime.fromtimestamp(epoch, tz=dt.UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def print_workers(out: TextIO, infos: Sequence[WorkerInfo]) -> None:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("worker", "host", "pid", "state", "last heartbeat", "sagas held"):
        table.add_column(column, no_wrap=True)
    for info in infos:
        colour = "green" if info.live else "red"
        table.add_row(
            escape(info.worker_id),
            escape(info.host),
            str(info.pid),
            f"[{colour}]{info.state}[/]",
            _ago(info.now - info.heartbeat_at),
            str(info.held),
        )
    target = console(out)
    target.print(table)
    live = sum(info.live for info in infos)
    target.print(f"{live} live workers ({len(infos)} registered)")
