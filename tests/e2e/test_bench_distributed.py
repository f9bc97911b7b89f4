"""`ordersaga bench --http` and `--workers`: real processes, each variant rated against in-process.

CI-size runs (60 orders): the point is that every variant decides every order and reports sane
figures next to its in-process baseline, not the figures themselves.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from ordersaga.errors import ConfigError
from ordersaga.proving.cpucap import CgroupCpu, CpuCaps, find_cpu_cgroup
from tests.conftest import pg_server_url
from tests.e2e.conftest import ordersaga


def _runs(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines()]


def _assert_sane(run: dict[str, Any], orders: int) -> None:
    assert run["orders"] == orders and run["confirmed"] + run["failed"] == orders
    assert run["orders_per_s"] > 0 and run["elapsed_s"] > 0
    assert 0 < run["p50_ms"] <= run["p95_ms"] <= run["p99_ms"] <= run["max_ms"]
    assert 0 < run["cpu_us_per_order"] <= run["tree_cpu_us_per_order"]


def _assert_tree_rated(run: dict[str, Any], baseline: dict[str, Any]) -> None:
    """The other processes' CPU is in the tree, and the tree is rated against in-process."""
    assert run["tree_cpu_us_per_order"] > run["cpu_us_per_order"]
    assert run["inprocess_tree_cpu_us_per_order"] == baseline["tree_cpu_us_per_order"]
    ratio = run["tree_cpu_us_per_order"] / baseline["tree_cpu_us_per_order"]
    assert abs(run["tree_cpu_ratio_to_inprocess"] - ratio) < 0.01


def test_http_runs_the_services_as_processes_after_an_in_process_baseline(tmp_path: Path) -> None:
    result = ordersaga("bench", "--orders", "60", "--http", "--json", "--tmp-dir", tmp_path)
    assert result.code == 0, result.err
    baseline, http = _runs(result.out)
    assert baseline["variant"] == "in-process" and http["variant"] == "http"
    for run in (baseline, http):
        _assert_sane(run, 60)
        assert run["store"] == "sqlite" and run["confirmed"] == 60
    assert http["inprocess_orders_per_s"] == baseline["orders_per_s"]
    assert http["ratio_to_inprocess"] > 0 and "ratio_to_inprocess" not in baseline
    assert http["service_commands_per_order"] == 0  # the services are other processes
    _assert_tree_rated(http, baseline)
    assert baseline["tree_pg_backends"] is None and http["tree_pg_backends"] is None
    assert list(tmp_path.iterdir()) == []  # data dirs and the world file are removed


def test_workers_drive_the_pipeline_with_a_submitter(tmp_path: Path) -> None:
    server = pg_server_url()
    result = ordersaga(
        "bench", "--orders", "60", "--workers", "1", "--store", server, "--json",
        "--fail-pay", "0.2", "--tmp-dir", tmp_path,
    )  # fmt: skip
    assert result.code == 0, result.err
    baseline, workers = _runs(result.out)
    assert baseline["variant"] == "in-process" and baseline["store"] == "postgresql"
    assert workers["variant"] == "workers=1" and workers["workers"] == 1
    for run in (baseline, workers):
        _assert_sane(run, 60)
        assert run["failed"] > 0  # the refused payments, compensated as expected
        assert run["compensations_per_order"] == run["expected_compensations_per_order"]
    assert (workers["confirmed"], workers["failed"]) == (baseline["confirmed"], baseline["failed"])
    assert workers["ratio_to_inprocess"] > 0
    assert workers["log_commits_per_order"] > 0  # the submitter's and the worker's, summed
    _assert_tree_rated(workers, baseline)
    # The worker's and the services' backends, and the submitter's: all serve the setup.
    assert workers["tree_pg_backends"] > baseline["tree_pg_backends"] >= 1
    # Per process: the submitter (this bench), the worker, each service and each database.
    expected = {"bench", "w1", "inventory", "shipping", "payment"}
    expected |= {f"pg {name}" for name in ("sagas", "inventory", "shipping", "payment")}
    assert set(workers["tree_cpu_by_process"]) == expected
    by_process = sum(workers["tree_cpu_by_process"].values())
    assert abs(by_process - workers["tree_cpu_us_per_order"]) < 1  # each rounded to 0.1 µs
    assert list(tmp_path.iterdir()) == []


def _writable_cpu_cgroup() -> CgroupCpu:
    """This process's cpu cgroup, if groups with a CPU cap can be made in it (else skip)."""
    try:
        cgroup = find_cpu_cgroup()
        with CpuCaps(cgroup, 0.5, ["probe"]):
            pass
    except ConfigError as exc:
        pytest.skip(f"no writable cgroup cpu controller here (root needed): {exc}")
    return cgroup


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_worker_cpu_caps_each_worker_in_a_cgroup_of_its_own(tmp_path: Path) -> None:
    server = pg_server_url()
    cgroup = _writable_cpu_cgroup()
    result = ordersaga(
        "bench", "--orders", "60", "--workers", "1,2", "--worker-cpu", "0.05", "--store", server,
        "--json", "--tmp-dir", tmp_path,
    )  # fmt: skip
    assert result.code == 0, result.err
    baseline, one, two = _runs(result.out)
    assert "worker_cpu_cap" not in baseline
    for run, names in ((one, {"w1"}), (two, {"w1", "w2"})):
        _assert_sane(run, 60)
        assert run["confirmed"] == 60 and run["worker_cpu_cap"] == 0.05
        assert "capped at 0.05 core each" in run["label"]
        # 60 orders take a worker far more than 1 ms of CPU per 20 ms: throttled, so capped.
        assert set(run["worker_throttled_share"]) == names
        assert all(0 < share <= 1 for share in run["worker_throttled_share"].values())
    # Every group removed: one still there belongs to another bench that is still running.
    left = [p.name for p in cgroup.parent.iterdir() if p.name.startswith("ordersaga-bench-")]
    assert all(_alive(int(name.split("-")[2])) for name in left), left
    assert list(tmp_path.iterdir()) == []


def test_usage_errors_of_the_distributed_variants() -> None:
    result = ordersaga("bench", "--workers", "2")
    assert result.code == 2 and "--store postgresql://" in result.err
    result = ordersaga("bench", "--worker-cpu", "0.25")
    assert result.code == 2 and "needs --workers" in result.err and "Traceback" not in result.err
    result = ordersaga(
        "bench", "--worker-cpu", "0.01", "--workers", "1", "--store", "postgresql://x"
    )
    assert result.code == 2 and "at least 0.05 core" in result.err and "Traceback" not in result.err
    result = ordersaga("bench", "--http", "--no-durability")
    assert result.code == 2 and "durable" in result.err and "Traceback" not in result.err
