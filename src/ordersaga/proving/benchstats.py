"""What ``ordersaga bench`` measures and prints: latency histogram, memory, the report.

Everything here is bounded in memory whatever the number of orders, so a streamed benchmark of
millions of orders measures the orchestrator's memory, not the benchmark's own bookkeeping.
"""

from __future__ import annotations

import math
import os
import resource
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ordersaga.proving.machine import Machine

__all__ = ["BenchReport", "LatencyHistogram", "current_rss_mb", "format_reports", "peak_rss_mb"]


class LatencyHistogram:
    """Latencies in logarithmic buckets 1 % wide: percentiles within 1 %, constant memory."""

    _LOW = 1e-6  # seconds; anything faster counts as 1 µs
    _GROWTH = math.log(1.01)

    def __init__(self) -> None:
        self._buckets: Counter[int] = Counter()
        self.count = 0
        self.total = 0.0
        self.max = 0.0

    def add(self, seconds: float) -> None:
        self.count += 1
        self.total += seconds
        self.max = max(self.max, seconds)
        self._buckets[int(math.log(max(seconds, self._LOW) / self._LOW) / self._GROWTH)] += 1

    def percentile(self, p: float) -> float:
        """The latency (seconds) that a share ``p`` (0..1) of the samples does not exceed."""
        if not self.count:
            return 0.0
        rank = max(1, math.ceil(p * self.count))
        seen = 0
        for index in sorted(self._buckets):
            seen += self._buckets[index]
            if seen >= rank:
                # The bucket's upper edge, but never above the largest sample seen.
                return min(self.max, self._LOW * math.exp((index + 1) * self._GROWTH))
        return self.max  # pragma: no cover - the loop always reaches the rank

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0


def peak_rss_mb() -> float:
    """The largest resident set of this process so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024  # bytes vs KiB


def current_rss_mb() -> float:
    """The resident set of this process now, in MiB (the peak where /proc is missing)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return peak_rss_mb()
    return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)


@dataclass(slots=True)
class BenchReport:
    """One benchmark run: its variant, and every figure measured (see ``to_json``)."""

    label: str
    store: str  # "sqlite", "postgresql" or "memory"
    durable: bool
    orders: int
    concurrency: int
    fault_rate: float
    elapsed_s: float
    cpu_s: float
    confirmed: int
    failed: int
    latency: LatencyHistogram
    retries: int
    compensations: int
    expected_compensations: int
    lost_sends: int | None  # None without fault injection
    log_commits: int
    log_writes: int
    service_commits: int
    service_commands: int
    peak_rss_mb: float
    rss_samples: list[tuple[int, float]] = field(default_factory=list)
    baseline: BenchReport | None = None  # the --no-durability run of a durability comparison
    #: "in-process", "http" or "workers=N" (services, and workers, as other processes)
    variant: str = "in-process"
    workers: int = 0  # worker processes (0: the engine runs in this process)
    inprocess: BenchReport | None = None  # the in-process run this variant is rated against
    #: CPU seconds of every process of the setup (see :mod:`ordersaga.proving.cputree`).
    tree_cpu_s: float = 0.0
    tree_pg_backends: int | None = None  # PostgreSQL backends counted in it (None: none)
    #: ``tree_cpu_s`` per process: "bench", each child by name, "pg <database>" for backends.
    tree_cpu_by_process: dict[str, float] = field(default_factory=dict)
    #: Each worker process's CPU cap in cores (``--worker-cpu``; None: uncapped).
    worker_cpu_cap: float | None = None
    #: Per capped worker: the share of its cgroup's bandwidth periods it was throttled in.
    worker_throttled: dict[str, float] = field(default_factory=dict)
    machine: Machine | None = None

    @property
    def ratio_to_inprocess(self) -> float:
        """This variant's orders/s ÷ the in-process run's (1.0 without one)."""
        if self.inprocess is None or not self.inprocess.orders_per_s:
            return 1.0
        return self.orders_per_s / self.inprocess.orders_per_s

    @property
    def tree_cpu_ratio_to_inprocess(self) -> float:
        """This variant's tree CPU per order ÷ the in-process run's (1.0 without one)."""
        if self.inprocess is None or not self.inprocess.tree_cpu_s or not self.orders:
            return 1.0
        theirs = self.inprocess.per_order(self.inprocess.tree_cpu_s)
        return self.per_order(self.tree_cpu_s) / theirs

    def per_order(self, n: float) -> float:
        return n / self.orders if self.orders else 0.0

    @property
    def orders_per_s(self) -> float:
        return self.orders / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        ms = 1000.0
        data: dict[str, Any] = {
            "variant": self.variant,
            "workers": self.workers,
            "label": self.label,
            "store": self.store,
            "durable": self.durable,
            "orders": self.orders,
            "concurrency": self.concurrency,
            "fault_rate": self.fault_rate,
            "elapsed_s": round(self.elapsed_s, 3),
            "orders_per_s": round(self.orders_per_s, 1),
            "cpu_us_per_order": round(self.per_order(self.cpu_s) * 1e6, 1),
            "tree_cpu_us_per_order": round(self.per_order(self.tree_cpu_s) * 1e6, 1),
            "tree_pg_backends": self.tree_pg_backends,
            "tree_cpu_by_process": {
                name: round(self.per_order(seconds) * 1e6, 1)
                for name, seconds in sorted(self.tree_cpu_by_process.items())
            },
            "p50_ms": round(self.latency.percentile(0.50) * ms, 3),
            "p95_ms": round(self.latency.percentile(0.95) * ms, 3),
            "p99_ms": round(self.latency.percentile(0.99) * ms, 3),
            "max_ms": round(self.latency.max * ms, 3),
            "mean_ms": round(self.latency.mean * ms, 3),
            "confirmed": self.confirmed,
            "failed": self.failed,
            "retries_per_order": round(self.per_order(self.retries), 4),
            "lost_sends_per_order": (
                None if self.lost_sends is None else round(self.per_order(self.lost_sends), 4)
            ),
            "compensations_per_order": round(self.per_order(self.compensations), 4),
            "expected_compensations_per_order": round(
                self.per_order(self.expected_compensations), 4
            ),
            "commits_per_order": round(self.per_order(self.log_commits + self.service_commits), 4),
            "log_commits_per_order": round(self.per_order(self.log_commits), 4),
            "service_commits_per_order": round(self.per_order(self.service_commits), 4),
            "log_writes_per_order": round(self.per_order(self.log_writes), 3),
            "service_commands_per_order": round(self.per_order(self.service_commands), 3),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
        }
        if self.worker_cpu_cap is not None:
            data["worker_cpu_cap"] = self.worker_cpu_cap
            data["worker_throttled_share"] = {
                name: round(share, 3) for name, share in sorted(self.worker_throttled.items())
            }
        if self.machine is not None:
            data["machine"] = self.machine.to_json()
        if self.rss_samples:
            data["rss_mb"] = [{"orders": n, "rss_mb": round(mb, 1)} for n, mb in self.rss_samples]
        if self.inprocess is not None:
            data["inprocess_orders_per_s"] = round(self.inprocess.orders_per_s, 1)
            data["ratio_to_inprocess"] = round(self.ratio_to_inprocess, 3)
            data["inprocess_tree_cpu_us_per_order"] = self.inprocess.to_json()[
                "tree_cpu_us_per_order"
            ]
            data["tree_cpu_ratio_to_inprocess"] = round(self.tree_cpu_ratio_to_inprocess, 3)
        if self.baseline is not None:
            data["baseline"] = self.baseline.to_json()
            ratio = self.baseline.orders_per_s / self.orders_per_s if self.orders_per_s else 0.0
            data["durability_overhead"] = round(ratio, 3)
        return data


def _block(report: BenchReport) -> list[str]:
    data = report.to_json()
    commits = (
        f"{data['commits_per_order']:.3f}"
        f" (saga log {data['log_commits_per_order']:.3f} for"
        f" {data['log_writes_per_order']:.2f} writes,"
        f" services {data['service_commits_per_order']:.3f} for"
        f" {data['service_commands_per_order']:.2f} commands)"
    )
    if report.variant != "in-process":  # the services' commits happen in other processes
        commits = (
            f"{data['log_commits_per_order']:.3f} in the saga log for"
            f" {data['log_writes_per_order']:.2f} writes (services: not counted, other processes)"
        )
    retries = f"{data['retries_per_order']:.4f}"
    if data["lost_sends_per_order"] is not None:
        retries += f" (lost sends {data['lost_sends_per_order']:.4f})"
    floor = ""
    if report.machine is not None and report.machine.fsync_p99_s is not None:
        floor = f"; the disk's fsync p99 {report.machine.fsync_p99_s * 1e3:.2f} ms"
    backends = ""
    if report.tree_pg_backends is not None:
        backends = f" (PostgreSQL backends included: {report.tree_pg_backends})"
    lines = [
        f"{report.label}: {report.orders} orders ({report.confirmed} confirmed,"
        f" {report.failed} failed)",
        f"  throughput     {data['orders_per_s']:.0f} orders/s ({data['elapsed_s']:.2f} s)",
        f"  CPU per order  {data['cpu_us_per_order']:.0f} µs this process,"
        f" {data['tree_cpu_us_per_order']:.0f} µs every process of the setup{backends}",
        *_by_process(data["tree_cpu_by_process"]),
        f"  latency        p50 {data['p50_ms']:.2f} ms, p95 {data['p95_ms']:.2f} ms,"
        f" p99 {data['p99_ms']:.2f} ms, max {data['max_ms']:.2f} ms (admission to outcome){floor}",
        f"  retries        {retries} per order",
        f"  compensations  {data['compensations_per_order']:.4f} per order"
        f" (expected {data['expected_compensations_per_order']:.4f})",
        f"  commits        {commits} per order",
        f"  memory         peak RSS {data['peak_rss_mb']:.1f} MiB",
    ]
    if report.worker_cpu_cap is not None:
        throttled = ", ".join(
            f"{name} {share:.0%}" for name, share in data["worker_throttled_share"].items()
        )
        lines.append(
            f"  CPU cap        {report.worker_cpu_cap:g} core per worker (cgroup cpu);"
            f" throttled in {throttled} of the periods"
        )
    if report.rss_samples:
        samples = ", ".join(f"{n}: {mb:.1f}" for n, mb in report.rss_samples)
        lines.append(f"  RSS (MiB)      after orders {samples}")
    return lines


def _by_process(per_order: dict[str, float]) -> list[str]:
    """The tree CPU per process, largest first (nothing when this process is all of it)."""
    if len(per_order) < 2:
        return []
    ranked = sorted(per_order.items(), key=lambda item: -item[1])
    return ["  by process     " + ", ".join(f"{name} {us:.0f}" for name, us in ranked) + " µs"]


def format_reports(reports: list[BenchReport]) -> str:
    """The human-readable form: the machine, then a block per run (a comparison adds the
    ratio, a distributed variant its ratios to the in-process run)."""
    out: list[str] = []
    machine = reports[0].machine if reports else None
    if machine is not None:
        out += [machine.header(), ""]
    for report in reports:
        out += _block(report)
        if report.baseline is not None:
            out += _block(report.baseline)
            ratio = report.to_json()["durability_overhead"]
            out.append(f"durability overhead (no-durability ÷ durable orders/s): {ratio:.2f}")
        if report.inprocess is not None:
            out.append(
                f"ratio to in-process ({report.variant} ÷ in-process orders/s):"
                f" {report.ratio_to_inprocess:.2f}"
                f" ({report.orders_per_s:.0f} ÷ {report.inprocess.orders_per_s:.0f})"
            )
            theirs = report.inprocess.per_order(report.inprocess.tree_cpu_s) * 1e6
            out.append(
                f"tree CPU ratio to in-process ({report.variant} ÷ in-process µs per order):"
                f" {report.tree_cpu_ratio_to_inprocess:.2f}"
                f" ({report.per_order(report.tree_cpu_s) * 1e6:.0f} ÷ {theirs:.0f})"
            )
        out.append("")
    return "\n".join(out)
