"""The engine issue's acceptance checks with three worker processes on a PostgreSQL saga log.

Orders go in through `ordersaga run --submit-only` (same parsing, ordering and output as an
ordinary run); the workers execute them with faults injected at rate 0.1 on their HTTP calls to
three service processes; `ordersaga audit` checks the saga log and the three databases by URL.

* Serial runs (concurrency 1) print exactly the lines of an in-process run without faults.
* A hot item of stock S confirms exactly S orders; a user capped at K orders gets exactly K
  (concurrency 64, faults): sagas on different workers compete for the same stock and credit.
* Resubmission: the same order again replays its outcome; the same id with other content fails.
* A worker SIGKILLed in the middle of a run: its sagas are finished by the others after its
  lease lapses, every order gets its line, and the audit (each operation applied at most once
  included) passes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ordersaga.orders.demo import demo_world
from ordersaga.proving.generate import generate_orders
from tests.integration.http.conftest import ordersaga_env

from .conftest import CAPPED_ORDERS, CAPPED_USER, HOT_STOCK, Topology, order, ordersaga

pytestmark = pytest.mark.pg


def test_serial_outcomes_equal_an_in_process_run_without_faults(
    topology: Topology, tmp_path: Path
) -> None:
    faults_before = sum(topology.faults().values())
    reference_dir = tmp_path / "reference"
    for seed in (1, 2):
        lines = generate_orders(70, seed=seed, world=demo_world(), id_prefix=f"s{seed}-")
        stream = "\n".join(lines) + "\n"
        code, distributed, err = topology.submit(stream, "--concurrency", "1")
        assert code in (0, 65), err
        code, reference, err = ordersaga(
            "run", "--data-dir", reference_dir, "--world", topology.world,
            "--concurrency", "1", stdin=stream,
        )  # fmt: skip
        assert code in (0, 65), err
        assert distributed.splitlines() == reference.splitlines()
        assert len(reference.splitlines()) > 60
        assert "confirmed" in reference and "failed" in reference
    assert sum(topology.faults().values()) > faults_before + 50  # the faults really fired
    topology.audit()


def test_a_hot_item_confirms_exactly_its_stock(topology: Topology) -> None:
    before = topology.faults()
    stream = "".join(order(f"h{i}", 700_000 + i, "HOT") + "\n" for i in range(300))
    code, out, err = topology.submit(stream, "--concurrency", "64")
    assert code == 0, err
    lines = out.splitlines()
    assert [line.split()[1] for line in lines] == [f"h{i}" for i in range(300)]
    assert sum(line.endswith("confirmed") for line in lines) == HOT_STOCK
    after = topology.faults()
    for fault in ("request_lost", "response_lost", "duplicate", "late", "delay"):
        assert after[fault] - before.get(fault, 0) >= 20, after  # every fault class fired
    topology.audit()


def test_a_capped_user_gets_exactly_k_orders(topology: Topology) -> None:
    stream = "".join(order(f"u{i}", CAPPED_USER, "P") + "\n" for i in range(150))
    code, out, err = topology.submit(stream, "--concurrency", "64", "--unordered")
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 150
    assert sum(line.endswith("confirmed") for line in lines) == CAPPED_ORDERS
    topology.audit()


def test_resubmission_replays_and_a_reused_id_fails(topology: Topology) -> None:
    first = [order("r1", 810_001, "K"), order("r2", 810_002, "K", qty=200_000)]
    code, out, err = topology.submit("\n".join(first) + "\n")
    assert code == 0, err
    assert out.splitlines() == ["Order r1 confirmed", "Order r2 failed"]
    again = [first[1], order("r1", 810_001, "K", qty=2), first[0], "Order r3, User x"]
    code, out, err = topology.submit("\n".join(again) + "\n", "--json")
    assert code == 0, err  # the invalid line names an id: it gets its "failed" line
    records = [json.loads(line) for line in out.splitlines()]
    assert [(r["order_id"], r["status"], r["replayed"]) for r in records] == [
        ("r2", "failed", True),
        ("r1", "failed", False),  # the id reused with other content: not executed
        ("r1", "confirmed", True),
        ("r3", "failed", False),
    ]
    assert "1 invalid, 2 replayed, 1 id reused" in err


def test_a_killed_worker_s_sagas_are_finished_by_the_others(topology: Topology) -> None:
    victim = topology.workers[0]
    n = 240
    orders = [order(f"k{i}", 800_000 + i, "K") + "\n" for i in range(n)]
    run = subprocess.Popen(
        [sys.executable, "-m", "ordersaga", "run", "-", "--submit-only",
         "--store", topology.store, "--concurrency", "48"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=ordersaga_env(),
    )  # fmt: skip
    assert run.stdin is not None and run.stdout is not None and run.stderr is not None
    stdout, stderr = run.stdout, run.stderr
    lines: list[bytes] = []
    err_chunks: list[bytes] = []
    readers = [
        threading.Thread(target=lambda: lines.extend(iter(stdout.readline, b""))),
        threading.Thread(target=lambda: err_chunks.append(stderr.read())),
    ]
    for reader in readers:
        reader.start()
    held: list[str] = []
    survivors = topology.workers[1:]
    taken_before = sum(worker.stats()["worker"]["taken_over"] for worker in survivors)
    try:
        run.stdin.write("".join(orders).encode())
        run.stdin.close()
        _wait_for(lambda: len(lines) >= 20, "the first outcomes")

        def victim_holds() -> bool:
            held[:] = _unfinished_held_by(topology, victim.name)
            return len(held) >= 3

        _wait_for(victim_holds, "the victim to hold sagas", timeout=30)
        victim.kill()  # SIGKILL, mid-run, with sagas in flight
        # What it held when it died, until when, and which of those it had begun.
        leases = {
            row["saga_id"]: row["lease_until"]
            for row in topology.sql(
                "SELECT saga_id, lease_until FROM sagas WHERE owner = $1"
                " AND status IN ('running', 'compensating', 'confirming')",
                victim.name,
            )
        }
        held[:] = list(leases)
        begun = topology.sql(
            "SELECT DISTINCT saga_id FROM saga_steps WHERE saga_id = ANY($1::text[])", held
        )
        code = run.wait(timeout=90)
    finally:
        if run.poll() is None:
            run.kill()
        for reader in readers:
            reader.join(timeout=10)
    err = b"".join(err_chunks).decode()
    assert code == 0, err
    assert held, "the victim held no saga when it was killed"
    outcomes = [line.decode().strip() for line in lines]
    assert outcomes == [f"Order k{i} confirmed" for i in range(n)], err
    rows = topology.sql(
        "SELECT saga_id, status, owner, updated_at FROM sagas WHERE saga_id = ANY($1::text[])",
        held,
    )
    assert {row["status"] for row in rows} == {"confirmed"}  # finished by the others
    for row in rows:
        assert row["owner"] != victim.name
        # Nobody touched it before its lease lapsed (the log's times are this machine's clock).
        assert row["updated_at"] >= leases[row["saga_id"]] - 0.05, row

    def resumed_from_the_log() -> bool:  # what the victim had begun (the stats lag a little)
        taken = sum(worker.stats()["worker"]["taken_over"] for worker in survivors)
        return taken - taken_before >= len(begun)

    _wait_for(resumed_from_the_log, "the survivors' stats to show the takeovers", timeout=5)
    topology.audit()  # invariant 6: every operation took effect at most once
    topology.workers[0] = topology.new_worker(0)  # back to three, for any test after this one
    topology.workers[0].wait_ready()


def _unfinished_held_by(topology: Topology, owner: str) -> list[str]:
    """The unfinished sagas ``owner`` holds a lease on."""
    rows = topology.sql(
        "SELECT saga_id FROM sagas WHERE owner = $1"
        " AND status IN ('running', 'compensating', 'confirming')",
        owner,
    )
    return [row["saga_id"] for row in rows]


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
