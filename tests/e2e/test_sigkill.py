"""A real `ordersaga run` SIGKILLed at random instants, restarted each time with the same
arguments: nothing is lost, nothing is done twice (CONTRACT.md section 5).

The instants come from a seeded random source: some a random delay after the start (the
interpreter starting, the databases opening, recovery), most a random number of printed outcome
lines plus a random delay (mid-run, sagas in flight). The assertions never depend on where a
kill landed: at --concurrency 1 the final outcome lines equal an uninterrupted run's, and every
line a killed run printed is the same line in the final run; the audit passes.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from ordersaga.orders.demo import demo_world
from ordersaga.proving.generate import generate_workload

from .crashkit import EXIT_DATAERR, assert_audit_ok, kill_and_finish, order_ids, run_args, run_here

KILLS = 4


def write_stream(path: Path, orders: int, seed: int) -> list[str]:
    """A generated workload (every refusal, invalid and malformed lines, resubmissions,
    contended items); returns the order id of each request, in order."""
    workload = list(generate_workload(orders, seed=seed, world=demo_world()))
    path.write_text("".join(g.line + "\n" for g in workload))
    return [g.order_id for g in workload if g.order_id is not None]


@pytest.fixture(scope="module")
def serial(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A 120-order stream and its outcome lines from an uninterrupted run at --concurrency 1."""
    root = tmp_path_factory.mktemp("serial")
    stream = root / "orders.txt"
    write_stream(stream, 120, seed=11)
    reference = run_here(root / "data", stream)
    assert reference.code in (0, EXIT_DATAERR), reference.err
    return stream, reference.lines


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_serial_run_killed_at_random_ends_like_an_uninterrupted_one(
    tmp_path: Path, serial: tuple[Path, list[str]], seed: int
) -> None:
    stream, reference = serial
    data = tmp_path / "data"
    argv = run_args(data, stream, concurrency=1, fault_rate=0.2, seed=seed)
    killed = kill_and_finish(argv, tmp_path, random.Random(seed), KILLS, len(reference))
    assert killed.kills == KILLS
    assert killed.final.returncode in (0, EXIT_DATAERR), killed.final.stderr
    assert killed.lines == reference
    for printed in killed.outputs:
        assert printed == reference[: len(printed)]
    assert_audit_ok(data)


def test_concurrent_run_killed_at_random_prints_every_outcome_once(tmp_path: Path) -> None:
    stream = tmp_path / "orders.txt"
    requests = write_stream(stream, 400, seed=12)
    data = tmp_path / "data"
    argv = run_args(data, stream, concurrency=16, fault_rate=0.2, seed=4)
    killed = kill_and_finish(argv, tmp_path, random.Random(4), KILLS + 1, len(requests))
    assert killed.kills == KILLS + 1
    assert killed.final.returncode in (0, EXIT_DATAERR), killed.final.stderr
    assert order_ids(killed.lines) == requests  # one line per request, in input order
    for printed in killed.outputs:
        assert printed == killed.lines[: len(printed)]  # a decided order never changes
    assert_audit_ok(data)
