"""Every named crash point, armed in turn: the process dies there, a restart finishes the job.

For each point: `ordersaga run` with ORDERSAGA_CRASH_AT=<point>@N must die at that point (exit 86,
``os._exit``: nothing flushed, nothing closed); what it printed before dying is a prefix of the
outcomes; the same command started again on the same data dir prints every request's outcome —
at --concurrency 1 exactly the lines of an uninterrupted run — and leaves a data dir that passes
the audit (CONTRACT.md section 5). At --concurrency 4 under faults, every point is armed in turn
on one data dir, each restart dying at the next point.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ordersaga.orders.demo import demo_world
from ordersaga.proving.generate import generate_orders, generate_workload
from ordersaga.saga.crash import CRASH_EXIT_CODE

from .crashkit import CRASH_STREAM, EXIT_DATAERR, assert_audit_ok, order_ids, run, run_here

#: (point, N): die at the N-th hit. N > 1 lets earlier sagas finish first, so the restart also
#: has decided orders to replay. Together they cover every log write (create, each step's
#: result, both decisions, both ends), both sides of every service call the order saga makes
#: in each phase, the middle of compensation and of confirmation, and both sides of the saga
#: log's group commit. The rare ones (the attention flag, voiding a payment whose outcome
#: stayed unknown) need a tuned engine: see test_the_rare_points_too.
POINTS = [
    ("saga.created", 3),
    ("log.before:create", 3),
    ("log.after:create", 3),
    ("log.before:reserve.result", 2),
    ("log.after:reserve.result", 2),
    ("log.before:ship.result", 2),
    ("log.after:ship.result", 2),
    ("log.before:decision.confirm", 2),
    ("log.after:decision.confirm", 2),
    ("log.before:decision.compensate", 2),
    ("log.after:decision.compensate", 2),
    ("log.before:end.failed", 2),
    ("log.after:end.failed", 2),
    ("log.before:end.confirmed", 2),
    ("log.after:end.confirmed", 2),
    ("call.before:reserve:action", 2),
    ("call.after:reserve:action", 2),
    ("call.before:ship:action", 2),
    ("call.after:ship:action", 2),
    ("call.before:pay:action", 2),
    ("call.after:pay:action", 2),
    ("call.before:reserve:compensate", 2),
    ("call.after:reserve:compensate", 2),
    ("call.before:ship:compensate", 2),
    ("call.after:ship:compensate", 2),
    ("call.before:commit:confirm", 2),
    ("call.after:commit:confirm", 2),
    ("call.before:schedule:confirm", 2),
    ("call.after:schedule:confirm", 2),
    ("call.before:capture:confirm", 2),
    ("call.after:capture:confirm", 2),
    ("compensation.during", 2),
    ("confirmation.during", 2),
    ("store.before:commit", 5),
    ("store.after:commit", 5),
]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The outcome lines of an uninterrupted run at --concurrency 1 without faults."""
    result = run_here(tmp_path_factory.mktemp("reference") / "data")
    assert result.code == EXIT_DATAERR, result.err
    return result.lines


def crash_then_resume(
    data: Path, point: str, n: int, *, concurrency: int, fault_rate: float
) -> tuple[list[str], list[str]]:
    crashed = run(
        data, concurrency=concurrency, fault_rate=fault_rate, seed=5, crash=f"{point}@{n}"
    )
    assert crashed.code == CRASH_EXIT_CODE, f"{point}@{n} did not fire:\n{crashed.err}"
    assert f"crash point {point} fired" in crashed.err
    resumed = run_here(data, concurrency=concurrency, fault_rate=fault_rate, seed=5)
    assert resumed.code == EXIT_DATAERR, resumed.err
    assert "Traceback" not in resumed.err
    assert_audit_ok(data)
    return crashed.lines, resumed.lines


@pytest.mark.parametrize(("point", "n"), POINTS, ids=[p for p, _ in POINTS])
def test_serial_run_resumes_to_the_uninterrupted_outcome(
    data: Path, reference: list[str], point: str, n: int
) -> None:
    before, after = crash_then_resume(data, point, n, concurrency=1, fault_rate=0.0)
    assert before == reference[: len(before)]
    assert after == reference


def test_a_concurrent_faulty_run_survives_every_point_in_turn(tmp_path: Path) -> None:
    # One data dir, one crash per point, each armed in a restart of the last: every restart
    # first recovers what the previous crash left unfinished (so points also fire in recovery),
    # then goes on until the point's first hit in new work.
    stream = tmp_path / "orders.txt"
    lines = generate_orders(150, seed=11, world=demo_world())
    stream.write_text("".join(line + "\n" for line in lines))
    data = tmp_path / "data"
    printed: list[list[str]] = []
    for point, _ in POINTS:
        crashed = run(data, stream, concurrency=4, fault_rate=0.2, seed=9, crash=f"{point}@1")
        assert crashed.code == CRASH_EXIT_CODE, f"{point} did not fire:\n{crashed.err}"
        printed.append(crashed.lines)
    final = run_here(data, stream, concurrency=4, fault_rate=0.2, seed=9)
    assert final.code == EXIT_DATAERR, final.err
    requests = [g.order_id for g in generate_workload(150, seed=11, world=demo_world())]
    assert order_ids(final.lines) == [i for i in requests if i is not None]
    for before in printed:
        assert before == final.lines[: len(before)]  # a printed outcome never changes
    assert_audit_ok(data)


def test_a_crash_during_recovery_is_recovered_too(data: Path, reference: list[str]) -> None:
    # Die after a shipment was prepared but before the log knew; then die again in the restart,
    # at its first service call, which is recovery re-sending that step; then resume for good.
    first = run(data, crash="call.after:ship:action@4")
    assert first.code == CRASH_EXIT_CODE
    second = run(data, crash="call.before:*@1")
    assert second.code == CRASH_EXIT_CODE and second.lines == []
    third = run(data, crash="log.before:end.*@1")
    assert third.code == CRASH_EXIT_CODE and third.lines == []
    final = run_here(data)
    assert final.code == EXIT_DATAERR, final.err
    assert final.lines == reference
    assert "resumed 1 unfinished saga" in final.err
    assert_audit_ok(data)


# A run with an engine tuned so that rare paths happen under faults: "attention" flags a saga at
# the first failed compensation or confirmation attempt; "hasty" gives each step one attempt and
# one probe, so some payment's outcome stays unknown and is voided.
TUNED_RUN = """
import asyncio, dataclasses, sys
from pathlib import Path
from ordersaga.local.run import RunOptions, lines_from, run_orders
from ordersaga.local.runtime import RuntimeSettings
from ordersaga.saga.crash import CrashPoints
from ordersaga.saga.executor import EngineSettings
from ordersaga.saga.retry import ACTION_POLICY, PROBE_POLICY

data, stream, tuning, point = sys.argv[1:]
if tuning == "attention":
    engine = EngineSettings(attention_after=0.0)
else:
    engine = EngineSettings(
        action_policy=dataclasses.replace(ACTION_POLICY, maximum_attempts=1),
        probe_policy=dataclasses.replace(PROBE_POLICY, maximum_attempts=1),
    )
seed = 2 if tuning == "attention" else 3
settings = RuntimeSettings(
    Path(data), fault_rate=0.3, seed=seed, crash=CrashPoints.parse(point), engine=engine
)
with open(stream, "rb", buffering=0) as lines:
    options = RunOptions(settings, concurrency=1)
    asyncio.run(run_orders(options, lines_from(lines), sys.stdout, sys.stderr))
"""


def tuned_run(data: Path, tuning: str, point: str = "") -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-c", TUNED_RUN, str(data), str(CRASH_STREAM), tuning, point]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("tuning", "point"),
    [
        ("attention", "log.before:attention"),
        ("attention", "log.after:attention"),
        ("hasty", "call.before:pay:compensate"),
        ("hasty", "call.after:pay:compensate"),
    ],
)
def test_the_rare_points_too(data: Path, reference: list[str], tuning: str, point: str) -> None:
    crashed = tuned_run(data, tuning, point)
    assert crashed.returncode == CRASH_EXIT_CODE, crashed.stderr
    assert f"crash point {point} fired" in crashed.stderr
    resumed = tuned_run(data, tuning)
    assert resumed.returncode == 0, resumed.stderr
    lines = resumed.stdout.splitlines()
    assert crashed.stdout.splitlines() == lines[: len(crashed.stdout.splitlines())]
    assert order_ids(lines) == order_ids(reference)
    if tuning == "attention":  # retries enough: faults change no outcome
        assert lines == reference
    assert_audit_ok(data)
