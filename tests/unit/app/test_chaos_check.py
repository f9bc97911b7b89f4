"""The chaos soak's verdict, its kill plan and its chaos dir, without any process."""

from __future__ import annotations

import json
import signal
from collections.abc import Sequence
from pathlib import Path

import pytest

from ordersaga.errors import ConfigError
from ordersaga.local.stats import RunStats
from ordersaga.orders.demo import demo_world
from ordersaga.proving.audit import AuditReport
from ordersaga.proving.chaos_check import RunRecord, check_outcomes, parse_outcome
from ordersaga.proving.chaosplan import ChaosOptions, chaos_world, kill_plans, prepare_chaos_dir
from ordersaga.proving.generate import GeneratedLine, Kind

WORKLOAD = [
    GeneratedLine("...", Kind.CONFIRM, "o1", "confirmed"),
    GeneratedLine("garbage", Kind.MALFORMED, None, None),
    GeneratedLine("...", Kind.INVALID, "o2", "failed"),
    GeneratedLine("...", Kind.OUT_OF_STOCK, "o3", "failed"),
    GeneratedLine("...", Kind.RESUBMIT_SAME, "o1", "confirmed"),
    GeneratedLine("...", Kind.RESUBMIT_DIFFERENT, "o3", "failed"),
]
GOOD = [
    "Order o1 confirmed",
    "Order o2 failed",
    "Order o3 failed",
    "Order o1 confirmed",
    "Order o3 failed",
]
LOGGED = {"o1": "confirmed", "o2": "failed", "o3": "failed"}
SNAPSHOT: dict[str, object] = {
    "faults": {"request_lost": 3, "response_lost": 1, "duplicate": 2, "late": 0, "delay": 1},
    "late": {"tombstoned": 1},
    "sagas": {"resumed": 1, "compensations": 2},
    "calls": {"calls": 10, "retries": 4},
}


def record(
    index: int,
    lines: Sequence[str],
    killed_in: str | None = "running",
    *,
    code: int | None = None,
    snapshot: dict[str, object] | None = None,
) -> RunRecord:
    killed = killed_in is not None
    return RunRecord(
        index,
        "running" if killed else "final",
        killed,
        killed_in,
        False,
        -signal.SIGKILL if killed else (65 if code is None else code),
        list(lines),
        snapshot,
        1.0,
    )


def verdict(
    runs: list[RunRecord], logged: dict[str, str] = LOGGED, audit: AuditReport | None = None
) -> list[str]:
    report = check_outcomes(
        WORKLOAD, runs, runs[-1], audit or AuditReport(), logged, planned_kills=1, elapsed=2.0
    )
    return report.violations


def test_a_clean_soak_has_no_violation_and_sums_every_run() -> None:
    runs = [record(1, GOOD[:2], snapshot=SNAPSHOT), record(2, GOOD, None, snapshot=SNAPSHOT)]
    report = check_outcomes(
        WORKLOAD, runs, runs[-1], AuditReport(), LOGGED, planned_kills=1, elapsed=2.0
    )
    assert report.ok, report.violations
    assert (report.requests, report.malformed, report.confirmed, report.failed) == (5, 1, 2, 3)
    assert (report.invalid, report.resubmitted, report.id_reused) == (1, 1, 1)
    assert report.faults["request_lost"] == 6 and report.late_tombstoned == 2
    assert (report.kills, report.kills_by_phase, report.runs) == (1, {"running": 1}, 2)
    assert (report.retries, report.compensations, report.resumed) == (8, 4, 2)
    assert report.orders_per_second == 2.5
    assert "PASS" in report.text_lines() and json.dumps(report.to_json())


@pytest.mark.parametrize(
    ("runs", "logged", "expected"),
    [
        # A killed run printed another outcome for an order than the final run.
        (
            [record(1, ["Order o1 failed"]), record(2, GOOD, killed_in=None)],
            LOGGED,
            "run 1 printed 'Order o1 failed' as line 1",
        ),
        # The final run lost a line, or printed one for the wrong order.
        ([record(1, []), record(2, GOOD[:4], killed_in=None)], LOGGED, "printed 4 lines"),
        (
            [record(1, []), record(2, [*GOOD[:4], "Order o9 failed"], killed_in=None)],
            LOGGED,
            "expected order o3",
        ),
        # An invalid order confirmed; a reused id confirmed; a resubmission's outcome differs.
        (
            [record(1, []), record(2, [GOOD[0], "Order o2 confirmed", *GOOD[2:]], killed_in=None)],
            {**LOGGED, "o2": "confirmed"},
            "an invalid order was confirmed",
        ),
        (
            [record(1, []), record(2, [*GOOD[:4], "Order o3 confirmed"], killed_in=None)],
            LOGGED,
            "reused with other content was confirmed",
        ),
        (
            [record(1, []), record(2, [*GOOD[:3], "Order o1 failed", GOOD[4]], killed_in=None)],
            LOGGED,
            "resubmitted, got failed after confirmed",
        ),
        # What was printed is not what the log decided; the log lacks an order.
        (
            [record(1, []), record(2, GOOD, killed_in=None)],
            {**LOGGED, "o1": "failed"},
            "the saga log says",
        ),
        (
            [record(1, []), record(2, GOOD, killed_in=None)],
            {"o1": "confirmed"},
            "the saga log knows 1",
        ),
        # A run died of something else than the kill; a kill never landed; a bad exit status.
        (
            [record(1, [], code=1, killed_in=None), record(2, GOOD, killed_in=None)],
            LOGGED,
            "exited 1",
        ),
        ([record(1, GOOD, killed_in=None)], LOGGED, "only 0 of 1 planned kills"),
        ([record(1, []), record(2, GOOD, killed_in=None, code=0)], LOGGED, "expected 65"),
    ],
)
def test_each_kind_of_breakage_is_a_violation(
    runs: list[RunRecord], logged: dict[str, str], expected: str
) -> None:
    violations = verdict(runs, logged)
    assert any(expected in v for v in violations), violations


def test_audit_violations_are_violations() -> None:
    audit = AuditReport()
    audit.add("o1", 2, "payment is authorized, expected captured")
    violations = verdict([record(1, []), record(2, GOOD, killed_in=None)], audit=audit)
    assert violations == [
        "audit: order o1: invariant 2 (confirmed order complete): payment is authorized,"
        " expected captured"
    ]


def test_parse_outcome() -> None:
    assert parse_outcome("Order o-1 confirmed") == ("o-1", "confirmed")
    assert parse_outcome("Order o1 maybe") is None
    assert parse_outcome("Order o1") is None


def test_the_kill_plan_is_seeded_and_mixes_every_mode() -> None:
    options = ChaosOptions(kills=50, seed=4)
    plans = kill_plans(options)
    assert plans == kill_plans(options)
    assert plans != kill_plans(ChaosOptions(kills=50, seed=5))
    assert {p.mode for p in plans} == {"startup", "recovery", "running"}
    assert all(0 <= p.share <= 2 for p in plans)


def test_the_chaos_world_scales_stock_to_the_workload() -> None:
    demo = demo_world().inventory.items
    world = chaos_world(10_000).inventory.items
    assert world["A"].stock == 10 * demo["A"].stock and world["C"].stock == 0
    assert chaos_world(10).inventory.items["GPU"].stock == demo["GPU"].stock


def test_only_a_chaos_dir_is_wiped(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    prepare_chaos_dir(fresh)
    assert (fresh / "runs").is_dir()
    (fresh / "chaos.json").write_text("{}")
    (fresh / "orders.txt").write_text("old")
    prepare_chaos_dir(fresh)
    assert not (fresh / "orders.txt").exists()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "file").write_text("mine")
    with pytest.raises(ConfigError, match="not a chaos dir"):
        prepare_chaos_dir(foreign)
    assert (foreign / "file").read_text() == "mine"


def test_options_are_checked() -> None:
    with pytest.raises(ConfigError):
        ChaosOptions(fault_rate=1.5)
    with pytest.raises(ConfigError):
        ChaosOptions(kills=-1)


def test_the_stats_file_is_replaced_whole_and_a_bad_path_is_a_config_error(
    tmp_path: Path,
) -> None:
    stats = RunStats(tmp_path / "stats.json")
    stats.enter("opening")
    first = json.loads((tmp_path / "stats.json").read_text())
    assert first["phase"] == "opening" and first["faults"] is None
    assert first["orders"]["requests"] == 0
    stats.enter("done")
    assert json.loads((tmp_path / "stats.json").read_text())["phase"] == "done"
    assert [p.name for p in tmp_path.iterdir()] == ["stats.json"]  # no temporary file left
    with pytest.raises(ConfigError, match="stats file"):
        RunStats(tmp_path / "missing" / "stats.json").enter("opening")
    RunStats(None).enter("opening")  # no file: nothing written, no error
