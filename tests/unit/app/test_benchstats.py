"""The benchmark's bookkeeping: a bounded latency histogram and the report's figures."""

from __future__ import annotations

import random

from ordersaga.proving.benchstats import BenchReport, LatencyHistogram, format_reports


def test_percentiles_are_within_one_percent() -> None:
    rng = random.Random(1)
    samples = [rng.lognormvariate(-4, 1) for _ in range(20_000)]
    histogram = LatencyHistogram()
    for sample in samples:
        histogram.add(sample)
    ordered = sorted(samples)
    for p in (0.5, 0.95, 0.99):
        exact = ordered[int(p * len(ordered)) - 1]
        assert abs(histogram.percentile(p) - exact) <= 0.011 * exact
    assert histogram.max == max(samples) and histogram.count == len(samples)
    assert abs(histogram.mean - sum(samples) / len(samples)) < 1e-9


def test_memory_stays_bounded_whatever_the_number_of_samples() -> None:
    histogram = LatencyHistogram()
    for n in range(200_000):
        histogram.add(0.001 + (n % 1000) * 1e-6)  # between 1 and 2 ms
    assert len(histogram._buckets) <= 71  # log(2) / log(1.01) buckets, give or take one


def test_an_empty_histogram_reports_zeros() -> None:
    assert LatencyHistogram().percentile(0.99) == 0.0 and LatencyHistogram().mean == 0.0


def _report(**changes: object) -> BenchReport:
    latency = LatencyHistogram()
    for ms in (1, 2, 3, 4):
        latency.add(ms / 1000)
    fields: dict[str, object] = dict(
        label="sqlite, c=4",
        store="sqlite",
        durable=True,
        orders=4,
        concurrency=4,
        fault_rate=0.1,
        elapsed_s=0.5,
        cpu_s=0.4,
        confirmed=3,
        failed=1,
        latency=latency,
        retries=2,
        compensations=1,
        expected_compensations=1,
        lost_sends=2,
        log_commits=2,
        log_writes=20,
        service_commits=4,
        service_commands=22,
        peak_rss_mb=50.0,
    )
    fields.update(changes)
    return BenchReport(**fields)  # type: ignore[arg-type]


def test_the_report_has_every_figure_per_order() -> None:
    data = _report().to_json()
    assert data["orders_per_s"] == 8.0
    assert 2.0 <= data["p50_ms"] <= 2.02 and (data["p99_ms"], data["max_ms"]) == (4.0, 4.0)
    assert data["retries_per_order"] == data["lost_sends_per_order"] == 0.5
    assert data["compensations_per_order"] == data["expected_compensations_per_order"] == 0.25
    assert data["commits_per_order"] == 1.5  # (2 + 4) / 4
    assert data["log_writes_per_order"] == 5.0 and data["peak_rss_mb"] == 50.0


def test_a_comparison_reports_the_cost_of_durability() -> None:
    report = _report()
    report.baseline = _report(durable=False, store="memory", elapsed_s=0.25)
    data = report.to_json()
    assert data["durability_overhead"] == 2.0 and data["baseline"]["durable"] is False
    text = format_reports([report])
    assert "durability overhead" in text and "8 orders/s" in text and "16 orders/s" in text
