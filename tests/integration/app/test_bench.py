"""`ordersaga bench` at CI size: the figures are there and sane (nothing here is timed).

Also the properties the benchmark measures that can be checked without a clock: no wasted
retries (one per lost request or response), compensations only where a step really failed, and
a streamed run that keeps no per-order state once an order is decided.
"""

from __future__ import annotations

import os
from pathlib import Path

from ordersaga.local.pipeline import Outcome, Pipeline
from ordersaga.local.runtime import RuntimeSettings, open_runtime
from ordersaga.proving.bench import run_bench
from ordersaga.proving.benchload import BenchOptions, Workload
from tests.conftest import pg_server_url

REQUIRED = (
    "orders_per_s",
    "cpu_us_per_order",
    "tree_cpu_us_per_order",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "retries_per_order",
    "compensations_per_order",
    "commits_per_order",
    "peak_rss_mb",
)


async def test_a_small_faulty_run_reports_sane_figures(tmp_path: Path) -> None:
    options = BenchOptions(
        orders=400,
        concurrency=(16,),
        fault_rate=0.1,
        seed=3,
        fail_reserve=0.05,
        fail_ship=0.05,
        fail_pay=0.05,
        durability="compare",
        tmp_dir=tmp_path,
    )
    (report,) = await run_bench(options)
    data = report.to_json()
    assert all(isinstance(data[field], int | float) for field in REQUIRED)
    assert data["orders"] == 400 and data["confirmed"] + data["failed"] == 400
    assert 0 < data["failed"] < 400 and data["orders_per_s"] > 0
    assert 0 < data["p50_ms"] <= data["p95_ms"] <= data["p99_ms"] <= data["max_ms"]
    # No wasted retries: each lost request or response costs its caller exactly one.
    lost = data["lost_sends_per_order"]
    assert lost > 0.5 and abs(data["retries_per_order"] - lost) <= 0.1 * lost
    # Compensations only where a step really failed (refused at shipping: 1, at payment: 2).
    assert data["compensations_per_order"] == data["expected_compensations_per_order"] > 0
    assert 0 < data["commits_per_order"] < 11  # 11 would be one commit per durable write
    # Create, decision, end: intermediate results ride in the decision (2: refused at once),
    # unless a later step must retry (then they are written first, at most once per retry).
    writes = data["log_writes_per_order"]
    assert 2 < writes <= 3 + data["retries_per_order"] and data["peak_rss_mb"] > 0
    baseline = data["baseline"]
    assert baseline["durable"] is False and baseline["store"] == "memory"
    assert baseline["confirmed"] == data["confirmed"] and data["durability_overhead"] > 0
    # One process: the tree is this process, over the same run (plus the sampling).
    assert data["cpu_us_per_order"] <= data["tree_cpu_us_per_order"]
    assert data["tree_pg_backends"] is None and baseline["tree_cpu_us_per_order"] > 0
    assert data["machine"]["cores"] >= 1 and data["machine"]["fsync_p99_ms"] > 0
    assert os.listdir(tmp_path) == []  # the data dirs are gone


async def test_one_run_per_concurrency_with_a_shared_workload(tmp_path: Path) -> None:
    options = BenchOptions(orders=120, concurrency=(1, 8), tmp_dir=tmp_path, fail_pay=0.1)
    reports = await run_bench(options)
    assert [r.concurrency for r in reports] == [1, 8]
    assert reports[0].confirmed == reports[1].confirmed  # the same orders, the same outcomes
    assert reports[0].retries == 0 and reports[0].lost_sends is None
    # At concurrency 1 nothing is shared: every durable write is a commit of its own.
    first = reports[0]
    assert (first.log_commits, first.service_commits) == (first.log_writes, first.service_commands)


async def test_a_streamed_run_samples_memory(tmp_path: Path) -> None:
    options = BenchOptions(orders=1200, concurrency=(32,), stream=True, rss_every=300)
    (report,) = await run_bench(options)
    assert [n for n, _ in report.rss_samples] == [300, 600, 900, 1200]
    assert report.expected_compensations == 0 and report.confirmed == 1200
    first, last = report.rss_samples[0][1], report.rss_samples[-1][1]
    assert last - first < 40  # MiB: generous, it only guards against per-order growth


async def test_a_run_keeps_no_state_per_decided_order(tmp_path: Path) -> None:
    """What memory could grow with on an endless stream is empty once the stream is done."""

    class Sink:
        decided = 0

        def outcome(self, outcome: Outcome) -> None:
            self.decided += 1

        def unreadable(self, lineno: int, reason: str) -> None: ...

        def rejected(self, lineno: int, order_id: str, reason: str) -> None: ...

        def flush(self) -> None: ...

    options = BenchOptions(orders=600, stream=True, fail_ship=0.1)
    world = options.world()
    runtime = await open_runtime(
        RuntimeSettings(tmp_path / "data", world=world, fault_rate=0.1, seed=2)
    )
    try:
        sink = Sink()
        pipeline = Pipeline(runtime.engine, sink, runtime.vault, concurrency=16, window=64)
        await pipeline.run(Workload(options, world).numbered())
        await runtime.transport.drain()
        assert sink.decided == 600
        assert pipeline._pending == {} and pipeline.counts.in_flight == 0
        assert runtime.engine._inflight == {}
        assert runtime.injector is not None and runtime.injector.pending_late == 0
        assert runtime.services is not None
        for service in (runtime.services.inventory, runtime.services.payment):
            assert service.runner._committer._pending == []
    finally:
        await runtime.close()


async def test_the_saga_log_on_postgresql(tmp_path: Path) -> None:
    options = BenchOptions(orders=150, concurrency=(16,), store=pg_server_url(), tmp_dir=tmp_path)
    (report,) = await run_bench(options)
    data = report.to_json()
    assert data["store"] == "postgresql" and data["confirmed"] == 150
    assert 0 < data["log_commits_per_order"] < data["log_writes_per_order"]
    # The saga log's backends are part of the setup: the tree holds their CPU too.
    assert data["tree_pg_backends"] >= 1
    assert data["tree_cpu_us_per_order"] > data["cpu_us_per_order"]
