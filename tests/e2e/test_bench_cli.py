"""`ordersaga bench` through the real command: its JSON, its table, its usage errors."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.conftest import ordersaga


def test_json_is_one_object_per_run(tmp_path: Path) -> None:
    result = ordersaga(
        "bench", "--orders", "150", "--concurrency", "1,8", "--json", "--tmp-dir", tmp_path
    )
    assert result.code == 0, result.err
    runs = [json.loads(line) for line in result.lines]
    assert [run["concurrency"] for run in runs] == [1, 8]
    for run in runs:
        assert run["orders"] == 150 and run["orders_per_s"] > 0
        assert run["p50_ms"] <= run["p95_ms"] <= run["p99_ms"]
        assert run["retries_per_order"] == 0 and run["compensations_per_order"] == 0
        assert run["commits_per_order"] > 0 and run["peak_rss_mb"] > 0
        assert run["tree_cpu_us_per_order"] >= run["cpu_us_per_order"] > 0
    assert "running sqlite, c=8" in result.err  # progress goes to stderr


def test_the_human_form_compares_durability(tmp_path: Path) -> None:
    result = ordersaga(
        "bench", "--orders", "100", "--compare-durability", "--fail-pay", "0.2",
        "--tmp-dir", tmp_path,
    )  # fmt: skip
    assert result.code == 0, result.err
    assert "orders/s" in result.out and "p99" in result.out
    assert "durability overhead (no-durability ÷ durable orders/s)" in result.out
    assert result.out.startswith("machine: ") and " cores, fsync p99 " in result.out
    assert "µs every process of the setup" in result.out


def test_usage_errors_are_one_line() -> None:
    result = ordersaga("bench", "--store", "sqlite:///x.db")
    assert result.code == 2 and "postgresql://" in result.err and "Traceback" not in result.err
    result = ordersaga("bench", "--no-durability", "--compare-durability")
    assert result.code == 2 and "not allowed with" in result.err
    result = ordersaga("bench", "--concurrency", "0")
    assert result.code == 2
