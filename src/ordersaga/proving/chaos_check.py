"""The verdict of a chaos soak: what every run printed, checked against the workload and the log.

Pure functions over plain values (the runs' output lines, their last counter snapshots, the
workload, the audit report, the saga log's statuses), so they are tested without processes.
"""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ordersaga.proving.audit import INVARIANTS, AuditReport
from ordersaga.proving.generate import GeneratedLine, Kind
from ordersaga.transport.faults import FAULT_CLASSES

#: Violations listed one by one in the report; the rest are only counted.
MAX_LISTED = 50


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One `ordersaga run` of a soak."""

    index: int
    mode: str  # how its kill was aimed ("startup", "recovery", "running"), or "final"
    killed: bool
    killed_in: str | None  # the run's phase when the kill landed ("starting": before opening)
    stalled: bool
    returncode: int
    lines: list[str]  # complete stdout lines (a line cut by the kill is dropped)
    snapshot: Mapping[str, Any] | None  # its last --stats-file snapshot
    elapsed: float


@dataclass(slots=True)
class ChaosReport:
    settings: dict[str, Any] = field(default_factory=dict)
    stream_lines: int = 0
    requests: int = 0
    malformed: int = 0
    confirmed: int = 0
    failed: int = 0
    invalid: int = 0
    resubmitted: int = 0
    id_reused: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    late_tombstoned: int = 0
    kills: int = 0
    kills_by_phase: dict[str, int] = field(default_factory=dict)
    runs: int = 0
    resumed: int = 0
    calls: int = 0
    retries: int = 0
    compensations: int = 0
    audit_checked: dict[str, int] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    run_seconds: float = 0.0
    kept: bool = True
    prunes: int = 0  # `ordersaga prune` passes run next to a run (--prune-every)

    @property
    def ok(self) -> bool:
        return not self.violations

    def per_order(self, n: int) -> float:
        return n / self.requests if self.requests else 0.0

    @property
    def orders_per_second(self) -> float:
        return self.requests / self.elapsed if self.elapsed > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "settings": self.settings,
            "stream_lines": self.stream_lines,
            "orders": self.requests,
            "malformed_lines": self.malformed,
            "outcomes": {
                "confirmed": self.confirmed,
                "failed": self.failed,
                "invalid": self.invalid,
                "resubmitted": self.resubmitted,
                "id_reused": self.id_reused,
            },
            "faults": self.faults,
            "late_tombstoned": self.late_tombstoned,
            "kills": self.kills,
            "kills_by_phase": self.kills_by_phase,
            "runs": self.runs,
            "sagas_resumed": self.resumed,
            "calls": self.calls,
            "retries": self.retries,
            "retries_per_order": round(self.per_order(self.retries), 4),
            "compensations": self.compensations,
            "compensations_per_order": round(self.per_order(self.compensations), 4),
            "audit": self.audit_checked,
            "violation_count": len(self.violations),
            "violations": self.violations[:MAX_LISTED],
            "elapsed": round(self.elapsed, 3),
            "run_seconds": round(self.run_seconds, 3),
            "orders_per_second": round(self.orders_per_second, 1),
            "data_dir_kept": self.kept,
            "prunes": self.prunes,
        }

    def text_lines(self) -> list[str]:
        s = self.settings
        faults = ", ".join(f"{name} {n}" for name, n in self.faults.items())
        phases = ", ".join(f"{phase} {n}" for phase, n in sorted(self.kills_by_phase.items()))
        audit = ", ".join(f"{k} {v}" for k, v in sorted(self.audit_checked.items()))
        text = [
            f"chaos soak: seed {s.get('seed')}, fault rate {s.get('fault_rate')},"
            f" concurrency {s.get('concurrency')}, {s.get('kills')} kills planned",
            f"orders         {self.requests} ({self.stream_lines} lines, {self.malformed} malformed"
            " without an outcome)",
            f"outcomes       {self.confirmed} confirmed, {self.failed} failed ({self.invalid}"
            f" invalid, {self.resubmitted} resubmitted, {self.id_reused} id reused);"
            f" {self.confirmed + self.failed} of {self.requests} decided",
            f"faults         {faults or 'none'} (all runs, killed ones included)",
            f"               late deliveries refused by tombstones {self.late_tombstoned}",
            f"kills          {self.kills} survived ({phases or 'none'}), {self.runs} runs,"
            f" {self.resumed} sagas resumed"
            + (f", {self.prunes} prunes alongside" if self.prunes else ""),
            f"retries        {self.retries} ({self.per_order(self.retries):.3f}/order)",
            f"compensations  {self.compensations} ({self.per_order(self.compensations):.3f}/order)",
            f"audit          {'OK' if not self.audit_failed else 'FAILED'} ({audit})",
            f"violations     {len(self.violations)}",
        ]
        text += [f"  - {v}" for v in self.violations[:MAX_LISTED]]
        if len(self.violations) > MAX_LISTED:
            text.append(f"  ... and {len(self.violations) - MAX_LISTED} more")
        text.append(
            f"throughput     {self.orders_per_second:.0f} orders/s ({self.requests} orders in"
            f" {self.elapsed:.1f} s, kills and restarts included; {self.run_seconds:.1f} s in runs)"
        )
        where = s.get("data_dir")
        text.append(f"data dir       {where} ({'kept' if self.kept else 'removed'})")
        text.append("PASS" if self.ok else "FAIL")
        return text

    @property
    def audit_failed(self) -> bool:
        return any(v.startswith("audit:") for v in self.violations)


def parse_outcome(line: str) -> tuple[str, str] | None:
    """``("o12", "confirmed")`` from ``Order o12 confirmed``; None for anything else."""
    parts = line.split(" ")
    if len(parts) != 3 or parts[0] != "Order" or parts[2] not in ("confirmed", "failed"):
        return None
    return parts[1], parts[2]


def check_outcomes(
    workload: Sequence[GeneratedLine],
    runs: Sequence[RunRecord],
    final: RunRecord,
    audit: AuditReport,
    log_status: Mapping[str, str],
    *,
    planned_kills: int,
    elapsed: float,
) -> ChaosReport:
    """Check everything the module docstring of :mod:`ordersaga.proving.chaos` lists."""
    report = ChaosReport(elapsed=elapsed)
    bad = report.violations
    requests = [g for g in workload if g.order_id is not None]
    report.stream_lines, report.requests = len(workload), len(requests)
    report.malformed = len(workload) - len(requests)
    _check_runs(report, runs, final, planned_kills, expect_65=report.malformed > 0)
    statuses = _check_final_lines(report, requests, final)
    for run in runs:
        if run is final:
            continue
        for k, line in enumerate(run.lines):
            if k >= len(final.lines) or final.lines[k] != line:
                final_line = final.lines[k] if k < len(final.lines) else "nothing"
                bad.append(
                    f"run {run.index} printed {line!r} as line {k + 1}; the final run"
                    f" {final_line!r}"
                )
    if statuses is not None:
        _check_kinds(report, requests, statuses, log_status)
    for v in audit.violations:
        who = f"order {v.order_id}" if v.order_id is not None else "-"
        bad.append(f"audit: {who}: invariant {v.invariant} ({INVARIANTS[v.invariant]}): {v.found}")
    report.audit_checked = dict(audit.checked)
    distinct = {g.order_id for g in requests}
    if len(log_status) != len(distinct) or set(log_status) != distinct:
        bad.append(f"the saga log knows {len(log_status)} orders, the stream has {len(distinct)}")
    _sum_snapshots(report, runs)
    return report


def _check_runs(
    report: ChaosReport,
    runs: Sequence[RunRecord],
    final: RunRecord,
    planned_kills: int,
    *,
    expect_65: bool,
) -> None:
    expected_code = 65 if expect_65 else 0
    phases: Counter[str] = Counter()
    for run in runs:
        report.run_seconds += run.elapsed
        if run.stalled:
            report.violations.append(f"run {run.index} made no progress and was killed")
        elif run.killed:
            phases[run.killed_in or "?"] += 1
            if run.returncode != -signal.SIGKILL:
                report.violations.append(
                    f"run {run.index} exited {run.returncode} before its kill landed"
                )
        elif run.returncode != expected_code:
            report.violations.append(
                f"run {run.index} exited {run.returncode}, expected {expected_code}"
            )
    report.runs = len(runs)
    report.kills = sum(phases.values())
    report.kills_by_phase = dict(phases)
    if report.kills < planned_kills:
        report.violations.append(f"only {report.kills} of {planned_kills} planned kills landed")
    if final.killed or final.stalled:
        report.violations.append("the final run did not finish")


def _check_final_lines(
    report: ChaosReport, requests: Sequence[GeneratedLine], final: RunRecord
) -> list[str] | None:
    """Each request's status in the final run, or None when its lines do not match the stream."""
    bad = report.violations
    if len(final.lines) != len(requests):
        bad.append(f"the final run printed {len(final.lines)} lines for {len(requests)} requests")
    statuses: list[str] = []
    for k, (line, generated) in enumerate(zip(final.lines, requests, strict=False)):
        parsed = parse_outcome(line)
        if parsed is None or parsed[0] != generated.order_id:
            bad.append(f"final line {k + 1} is {line!r}; expected order {generated.order_id}")
            continue
        statuses.append(parsed[1])
    if len(statuses) != len(requests):
        return None
    report.confirmed = statuses.count("confirmed")
    report.failed = statuses.count("failed")
    return statuses


def _check_kinds(
    report: ChaosReport,
    requests: Sequence[GeneratedLine],
    statuses: Sequence[str],
    log_status: Mapping[str, str],
) -> None:
    """Deterministic outcomes whatever the interleaving, and printed = logged decision."""
    bad = report.violations
    first: dict[str, str] = {}
    for generated, status in zip(requests, statuses, strict=True):
        order_id = generated.order_id
        assert order_id is not None
        kind = generated.kind
        if kind is Kind.INVALID:
            report.invalid += 1
        if kind is Kind.RESUBMIT_SAME:
            report.resubmitted += 1
        if kind is Kind.RESUBMIT_DIFFERENT:
            report.id_reused += 1
        if order_id not in first:
            first[order_id] = status
            logged = log_status.get(order_id)
            if logged != status:
                bad.append(f"order {order_id}: printed {status}, the saga log says {logged}")
            if kind is Kind.INVALID and status != "failed":
                bad.append(f"order {order_id}: an invalid order was {status}")
            continue
        if kind is Kind.RESUBMIT_DIFFERENT and status != "failed":
            bad.append(f"order {order_id}: its id reused with other content was {status}")
        if kind is Kind.RESUBMIT_SAME and status != first[order_id]:
            bad.append(f"order {order_id}: resubmitted, got {status} after {first[order_id]}")


def _sum_snapshots(report: ChaosReport, runs: Sequence[RunRecord]) -> None:
    faults: Counter[str] = Counter({name: 0 for name in FAULT_CLASSES})
    for run in runs:
        snapshot = run.snapshot or {}
        faults.update(snapshot.get("faults") or {})
        report.late_tombstoned += int((snapshot.get("late") or {}).get("tombstoned", 0))
        sagas = snapshot.get("sagas") or {}
        calls = snapshot.get("calls") or {}
        report.resumed += int(sagas.get("resumed", 0))
        report.compensations += int(sagas.get("compensations", 0))
        report.calls += int(calls.get("calls", 0))
        report.retries += int(calls.get("retries", 0))
    report.faults = dict(faults)
