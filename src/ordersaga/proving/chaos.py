"""`ordersaga chaos`: a soak that kills the orchestrator at random instants, then proves it held.

What it does, all of it derived from ``--seed``::

    generate a workload  (CHAOS_DIR/orders.txt: contended items, every refusal, invalid and
                          malformed lines, resubmissions; the world in CHAOS_DIR/world.json)
    loop                 spawn `ordersaga run` with the same arguments every time, SIGKILL it at
                          a random instant (while it starts, while it recovers, while it runs),
                          until --kills kills have landed
    finish               one more run, left to complete
    audit                the invariants of CONTRACT.md section 6 on the data dir (in process)
    check                the final run printed exactly one outcome line per request, in input
                          order, for the right order ids; every line a killed run printed is
                          the same in the final run (a decided order never changes its outcome);
                          invalid lines and reused ids failed; a resubmission got its original's
                          outcome; every run ended by the kill or with exit status 0/65
    report               orders, outcomes, faults injected per class (summed over every run, the
                          killed ones included, from their ``--stats-file`` snapshots), kills by
                          phase, retries and compensations per order, violations, orders/s

Any violation makes the command exit 1. The workload, the fault seed and the kill plan are
reproducible; the instants a kill lands at depend on the machine's speed, and so, at
``--concurrency`` above 1, can which of several contending orders win.

The chaos dir (``--data-dir``, default ``./chaos-data``) holds the workload, the data dir
(``data/``), and each run's stdout/stderr (``runs/``). An existing chaos dir is wiped first; any
other existing, non-empty directory is refused. It is removed after a passing soak unless
``--keep``; after a failing one it is always kept, for inspection.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import fields, replace
from pathlib import Path
from typing import TextIO

from ordersaga.errors import OrderSagaError
from ordersaga.local.datadir import DataDir
from ordersaga.proving.audit import AuditReport, audit_data_dir
from ordersaga.proving.chaos_check import ChaosReport, check_outcomes
from ordersaga.proving.chaosplan import (
    MARKER,
    ChaosOptions,
    kill_plans,
    prepare_chaos_dir,
    write_workload,
)
from ordersaga.proving.chaosrun import Supervisor
from ordersaga.saga.store import open_store


def run_chaos(options: ChaosOptions, log: Callable[[str], None]) -> ChaosReport:
    """Run the soak described in the module docstring; return its report."""
    started = time.monotonic()
    root = options.data_dir
    prepare_chaos_dir(root)
    settings = {f.name: getattr(options, f.name) for f in fields(options)}
    settings["data_dir"] = str(root)
    (root / MARKER).write_text(json.dumps({"chaos": 1, "options": settings}, indent=2), "utf-8")
    workload = write_workload(root, options)
    requests = sum(g.order_id is not None for g in workload)
    log(
        f"chaos: {len(workload)} lines ({requests} requests) in {root / 'orders.txt'};"
        f" {options.kills} kills planned"
    )
    supervisor = Supervisor(root, options, requests, log)
    plans = kill_plans(options)
    landed = misses = 0
    pruner: subprocess.Popen[bytes] | None = None
    prunes: list[str] = []  # the failures
    # A run may end before its kill lands (a short workload, a fast machine): the kill is then
    # aimed again, sooner, a bounded number of times.
    for _ in range(3 * options.kills + 3):
        if landed == options.kills:
            break
        plan = plans[landed]
        plan = replace(plan, delay=plan.delay / 2**misses, share=plan.share / 2**misses)
        running_left = sum(p.mode == "running" for p in plans[landed:])
        record = supervisor.run_killed(plan, running_left)
        if record.stalled:
            break
        landed += record.killed
        misses = 0 if record.killed else misses + 1
        _collect(pruner, prunes)
        pruner = None
        if options.prune_every and record.killed and landed % options.prune_every == 0:
            pruner = supervisor.start_prune()  # alongside the next run
    final = supervisor.run_to_end()
    _collect(pruner, prunes)
    data_dir = root / "data"
    unaudited = None
    try:
        audit = asyncio.run(audit_data_dir(data_dir))
        statuses = asyncio.run(logged_statuses(data_dir))
    except OrderSagaError as exc:  # e.g. no run got as far as initialising the data dir
        audit, statuses = AuditReport(), {}
        unaudited = f"the data dir could not be audited: {exc}"
    report = check_outcomes(
        workload,
        supervisor.runs,
        final,
        audit,
        statuses,
        planned_kills=options.kills,
        elapsed=time.monotonic() - started,
    )
    if unaudited:
        report.violations.append(unaudited)
    report.prunes = len(prunes)
    report.violations += [p for p in prunes if p]
    report.settings = settings
    if report.ok and not options.keep:
        shutil.rmtree(root, ignore_errors=True)
        report.kept = False
    return report


def _collect(pruner: subprocess.Popen[bytes] | None, prunes: list[str]) -> None:
    """Wait for a background prune; note an empty string, or what went wrong."""
    if pruner is None:
        return
    _, err = pruner.communicate()
    failed = pruner.returncode != 0
    detail = err.decode(errors="replace").strip()
    prunes.append(f"prune alongside a run exited {pruner.returncode}: {detail}" if failed else "")


async def logged_statuses(data_dir: Path) -> dict[str, str]:
    """Every saga's status in the data dir's saga log."""
    store = await open_store(DataDir(data_dir).locations().store_url)
    try:
        return {record.saga_id: record.status.value async for record in store.scan(2000)}
    finally:
        await store.close()


def print_report(report: ChaosReport, out: TextIO, *, as_json: bool) -> None:
    if as_json:
        out.write(json.dumps(report.to_json(), indent=2, sort_keys=True) + "\n")
    else:
        out.write("\n".join(report.text_lines()) + "\n")
    out.flush()
