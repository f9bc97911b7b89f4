"""`ordersaga chaos` (the CI-sized soak) and `ordersaga run --stats-file`, through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

from ordersaga.transport.faults import FAULT_CLASSES

from .conftest import ordersaga
from .crashkit import CRASH_STREAM


def test_a_short_soak_survives_its_kills_with_no_violation(tmp_path: Path) -> None:
    """With a prune of everything finished alongside the run after each kill, too."""
    chaos_dir = tmp_path / "chaos"
    result = ordersaga(
        *("chaos", "--orders", "300", "--kills", "3", "--seed", "2", "--concurrency", "16"),
        *("--data-dir", chaos_dir, "--json", "--prune-every", "1"),
    )
    assert result.code == 0, result.out + result.err
    report = json.loads(result.out)
    assert report["ok"] is True and report["violation_count"] == 0
    assert report["kills"] == 3 and report["runs"] >= 4
    assert report["prunes"] == 3
    assert report["audit"]["pruned"] > 0  # the audit passed on a pruned log
    outcomes = report["outcomes"]
    assert outcomes["confirmed"] + outcomes["failed"] == report["orders"] > 250
    assert outcomes["invalid"] > 0 and report["malformed_lines"] > 0
    assert all(report["faults"][name] > 0 for name in FAULT_CLASSES)
    assert report["audit"]["orders"] > 0 and report["retries"] > 0
    assert "killed while" in result.err  # each run is logged on stderr as it ends
    assert not chaos_dir.exists()  # a passing soak cleans up after itself without --keep


def test_chaos_keeps_its_dir_on_request_and_never_wipes_a_foreign_one(tmp_path: Path) -> None:
    chaos_dir = tmp_path / "chaos"
    args = ("chaos", "--orders", "40", "--kills", "1", "--data-dir", chaos_dir)
    kept = ordersaga(*args, "--keep")
    assert kept.code == 0, kept.out + kept.err
    assert "PASS" in kept.out and "violations     0" in kept.out
    assert (chaos_dir / "chaos.json").is_file() and (chaos_dir / "data" / "saga.db").is_file()
    foreign = tmp_path / "precious"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    refused = ordersaga("chaos", "--orders", "40", "--kills", "1", "--data-dir", foreign)
    assert refused.code == 2 and "not a chaos dir" in refused.err
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_run_keeps_its_counters_in_the_stats_file(tmp_path: Path) -> None:
    stats = tmp_path / "stats.json"
    data = tmp_path / "data"
    result = ordersaga(
        *("run", CRASH_STREAM, "--data-dir", data, "--fault-rate", "0.3", "--seed", "3"),
        *("--stats-file", stats),
    )
    assert result.code == 65, result.err
    snapshot = json.loads(stats.read_text())
    assert snapshot["phase"] == "done"
    assert snapshot["orders"]["requests"] == len(result.lines)
    assert snapshot["orders"]["confirmed"] == sum(" confirmed" in x for x in result.lines)
    assert snapshot["sagas"]["compensations"] > 0 and snapshot["calls"]["retries"] > 0
    faults = snapshot["faults"]
    assert set(faults) == set(FAULT_CLASSES)
    summary = ", ".join(f"{name} {faults[name]}" for name in FAULT_CLASSES)
    assert f"faults injected: {summary}" in result.err  # the same counts as the summary
    bad = ordersaga("run", CRASH_STREAM, "--data-dir", data, "--stats-file", tmp_path / "no/x")
    assert bad.code == 2 and "stats file" in bad.err and "Traceback" not in bad.err
