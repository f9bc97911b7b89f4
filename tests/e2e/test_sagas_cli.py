"""`ordersaga sagas list|show|retry|resolve|cancel` on a real SQLite data dir, through the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.e2e.conftest import ordersaga
from tests.integration.http.conftest import ServiceProcess

CARD = "4111111111111111"


def _jsons(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def test_list_and_show_a_finished_run(data: Path) -> None:
    stream = ordersaga("generate", "--orders", "60", "--seed", "5", "--no-malformed").out
    stream += (
        f"Order card-1, User 7, Items: [{{A, 1}}], Payment: CreditCard {CARD} 12/40,"
        " Address: 1 Main St, Springfield, US\n"
    )
    run = ordersaga("run", "--data-dir", data, "--json", input=stream)
    assert run.code == 0, run.err
    outcomes = {o["order_id"]: o for o in _jsons(run.out)}
    failed = {i for i, o in outcomes.items() if o["status"] == "failed"}
    assert failed and all(outcomes[i]["cause"] == "business" for i in failed)
    assert all(outcomes[i]["step"] in ("reserve", "ship", "pay") for i in failed)

    listed = ordersaga("sagas", "list", "--data-dir", data, "--json")
    assert listed.code == 0, listed.err
    rows = _jsons(listed.out)
    assert sorted(r["order_id"] for r in rows) == sorted(outcomes)  # one line per saga
    assert all(r["status"] == outcomes[r["order_id"]]["status"] for r in rows)
    only_failed = _jsons(ordersaga("sagas", "list", "--data-dir", data, "--status", "failed",
                                   "--json").out)  # fmt: skip
    assert {r["order_id"] for r in only_failed} == failed
    assert all(r["status"] == "failed" for r in only_failed)
    limited = _jsons(ordersaga("sagas", "list", "--data-dir", data, "--limit", "7",
                               "--json").out)  # fmt: skip
    assert [r["order_id"] for r in limited] == [r["order_id"] for r in rows[:7]]
    table = ordersaga("sagas", "list", "--data-dir", data, "--older-than", "0s")
    assert table.code == 0 and f"{len(outcomes)} sagas" in table.out

    compensated = next(i for i, o in outcomes.items() if o["compensations"] > 0)
    shown = ordersaga("sagas", "show", compensated, "--data-dir", data, "--json")
    assert shown.code == 0, shown.err
    view = json.loads(shown.out)
    phases = [(s["step"], s["phase"], s["result"]) for s in view["steps"]]
    assert ("reserve", "compensate", "applied") in phases
    assert view["compensations"] == outcomes[compensated]["compensations"]
    assert view["decision"]["outcome"] == "failed"
    text = ordersaga("sagas", "show", compensated, "--data-dir", data)
    assert text.code == 0 and "compensate" in text.out and "applied" in text.out

    card = ordersaga("sagas", "show", "card-1", "--data-dir", data, "--json")
    assert CARD not in card.out and "1111" in card.out
    # The card was sealed, then erased once the saga was decided: its last four digits remain.
    assert json.loads(card.out)["input"]["payment_info"]["card_last4"] == "1111"

    # A replay reports the original saga's cost, not zeros.
    again = ordersaga("run", "--data-dir", data, "--json", input=stream)
    replayed = {o["order_id"]: o for o in _jsons(again.out)}
    assert replayed[compensated]["replayed"] is True
    assert replayed[compensated]["compensations"] == outcomes[compensated]["compensations"]
    assert replayed[compensated]["step"] == outcomes[compensated]["step"]


def test_resolve_is_recorded_shown_and_never_contradicts_the_log(data: Path) -> None:
    stream = "Order r1, User 7, Items: [{A, 1}], Payment: PayPal, Address: X, US\n"
    stream += "Order r2, User 7, Items: [{C, 1}], Payment: PayPal, Address: X, US\n"
    assert ordersaga("run", "--data-dir", data, input=stream).code == 0

    wrong = ordersaga("sagas", "resolve", "r1", "--data-dir", data, "--as", "failed",
                      "--note", "mistake")  # fmt: skip
    assert wrong.code == 2 and "contradict" in wrong.err and wrong.err.count("\n") == 1
    assert "Traceback" not in wrong.err
    before = json.loads(ordersaga("sagas", "show", "r1", "--data-dir", data, "--json").out)
    assert before["actions"] == [] and before["status"] == "confirmed"

    ok = ordersaga("sagas", "resolve", "r2", "--data-dir", data, "--as", "failed",
                   "--note", "customer called", "--by", "alice", "--json")  # fmt: skip
    assert ok.code == 0, ok.err
    view = json.loads(ordersaga("sagas", "show", "r2", "--data-dir", data, "--json").out)
    assert [(a["action"], a["who"], a["note"]) for a in view["actions"]] == [
        ("resolve failed", "alice", "customer called")
    ]
    assert (
        "alice resolve failed: customer called"
        in ordersaga("sagas", "show", "r2", "--data-dir", data).out
    )
    audit = ordersaga("audit", "--data-dir", data, "--json")
    assert audit.code == 0, audit.out
    assert json.loads(audit.out)["checked"]["resolved by operators"] == 1

    for args in (["retry", "r1"], ["cancel", "r1"], ["show", "nope"]):
        refused = ordersaga("sagas", *args, "--data-dir", data)
        assert refused.code == 2 and refused.err.startswith("ordersaga: "), refused.err


def test_nothing_is_created_for_a_data_dir_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    for args in (["list"], ["show", "x"], ["retry", "x"]):
        result = ordersaga("sagas", *args, "--data-dir", missing)
        assert result.code == 2 and "not an ordersaga data dir" in result.err
    assert not missing.exists()
    bad = ordersaga("sagas", "list", "--data-dir", missing, "--older-than", "3 days")
    assert bad.code == 2 and "not a duration" in bad.err


def test_list_and_show_while_a_run_executes(data: Path) -> None:
    run = subprocess.Popen(
        [sys.executable, "-m", "ordersaga", "run", "--data-dir", str(data)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert run.stdin is not None and run.stdout is not None
        run.stdin.write(b"Order live-1, User 7, Items: [{A, 1}], Payment: PayPal, Address: X, US\n")
        run.stdin.flush()
        assert run.stdout.readline() == b"Order live-1 confirmed\n"
        # The run still holds the data dir (its input is open); read-only commands work.
        listed = ordersaga("sagas", "list", "--data-dir", data, "--json", timeout=30)
        assert listed.code == 0, listed.err
        assert [r["order_id"] for r in _jsons(listed.out)] == ["live-1"]
        shown = ordersaga("sagas", "show", "live-1", "--data-dir", data, timeout=30)
        assert shown.code == 0 and "confirmed" in shown.out
        assert run.poll() is None
        run.stdin.write(b"Order live-2, User 7, Items: [{C, 1}], Payment: PayPal, Address: X, US\n")
        run.stdin.close()
        assert run.stdout.readline() == b"Order live-2 failed\n"
        assert run.wait(timeout=30) == 0
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()


def _poll(data: Path, predicate: Any, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listed = ordersaga("sagas", "list", "--data-dir", data, "--json", timeout=30)
        for row in _jsons(listed.out) if listed.code == 0 else []:
            if predicate(row):
                return row
        time.sleep(0.1)
    raise AssertionError("the saga never got there")


def test_cancel_and_retry_sagas_held_by_a_shipping_outage(data: Path, tmp_path: Path) -> None:
    """Shipping is down: c1 is stuck before its decision and its run killed; it is cancelled;
    the next run cannot get its compensation through and it is flagged; once shipping is back,
    retry and the next run finish it, and the audit passes."""
    services = {
        name: ServiceProcess(name, f"sqlite:///{tmp_path / f'{name}.db'}", tmp_path)
        for name in ("inventory", "shipping", "payment")
    }
    try:
        for name in ("inventory", "payment"):
            services[name].start()
        _outage(data, services)
    finally:
        for service in services.values():
            service.kill()


def _outage(data: Path, services: dict[str, ServiceProcess]) -> None:
    shipping = services["shipping"]  # down from the start; started later (same port and db)
    urls = ",".join(f"{name}={s.url}" for name, s in services.items())
    run_args = [sys.executable, "-m", "ordersaga", "run", "--data-dir", str(data),
                "--services", urls, "--attention-after", "0.3", "--json"]  # fmt: skip

    first = subprocess.Popen(run_args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL)  # fmt: skip
    assert first.stdin is not None
    first.stdin.write(b"Order c1, User 7, Items: [{A, 1}], Payment: PayPal, Address: X, US\n")
    first.stdin.flush()
    row = _poll(data, lambda r: r["order_id"] == "c1" and r["current_step"] == "ship")
    assert row["status"] == "running"
    first.send_signal(signal.SIGKILL)
    first.wait()
    cancel = ordersaga("sagas", "cancel", "c1", "--data-dir", data, "--note", "stuck")
    assert cancel.code == 0, cancel.err

    # The next run recovers c1 first: its compensation of the shipment cannot get through.
    second = subprocess.Popen(run_args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL)  # fmt: skip
    flagged = _poll(data, lambda r: r["needs_attention"] and r["order_id"] == "c1")
    assert flagged["status"] == "compensating" and flagged["cause"] == "operator"
    # Why: the compensation of the shipment keeps failing, with how and since when.
    assert flagged["attention_reason"].startswith("ship (compensate): shipping cancel still")
    assert flagged["current_step"].endswith("(compensate)")
    second.send_signal(signal.SIGINT)
    second.wait(timeout=30)
    attention = _jsons(ordersaga("sagas", "list", "--data-dir", data, "--needs-attention",
                                 "--json").out)  # fmt: skip
    assert [r["order_id"] for r in attention] == ["c1"]
    assert attention[0]["attention_reason"] == flagged["attention_reason"]
    text = ordersaga("sagas", "show", "c1", "--data-dir", data).out
    assert "needs attention: ship (compensate): shipping cancel still failing" in text

    shipping.start()  # the outage ends
    retry = ordersaga("sagas", "retry", "c1", "--data-dir", data, "--note", "shipping is back")
    assert retry.code == 0, retry.err
    assert _jsons(ordersaga("sagas", "list", "--data-dir", data, "--needs-attention",
                            "--json").out) == []  # fmt: skip
    third = ordersaga("run", "--data-dir", data, "--services", urls, input="")
    assert third.code == 0, third.err
    assert "resumed" in third.err

    c1 = json.loads(ordersaga("sagas", "show", "c1", "--data-dir", data, "--json").out)
    assert c1["status"] == "failed" and c1["cause"] == "operator"
    assert [a["action"] for a in c1["actions"]] == ["cancel", "retry"]
    assert {(s["step"], s["phase"]) for s in c1["steps"]} >= {
        ("reserve", "compensate"),
        ("ship", "compensate"),
        ("pay", "compensate"),
    }
    service_dbs = ",".join(f"{n}={s.db_url}" for n, s in services.items())
    audit = ordersaga("audit", "--data-dir", data, "--service-dbs", service_dbs)
    assert audit.code == 0, audit.out + audit.err
    assert os.path.exists(data / "saga.db")


def test_show_lists_every_attempt_of_a_run_with_faults(data: Path) -> None:
    stream = ordersaga("generate", "--orders", "40", "--seed", "3", "--no-malformed").out
    run = ordersaga("run", "--data-dir", data, "--fault-rate", "0.3", "--seed", "4", "--json",
                    input=stream)  # fmt: skip
    assert run.code == 0, run.err
    outcomes = _jsons(run.out)
    retried = max(outcomes, key=lambda o: o["retries"])
    assert retried["retries"] >= 2
    results: set[str] = set()
    for outcome in outcomes:
        shown = ordersaga("sagas", "show", outcome["order_id"], "--data-dir", data, "--json")
        assert shown.code == 0, shown.err
        view = json.loads(shown.out)
        retries = 0
        for step in view["steps"]:
            attempts = step["attempts"]
            assert len(attempts) == step["attempt_count"]  # every attempt is there
            assert [a["at"] for a in attempts] == sorted(a["at"] for a in attempts)
            assert step["started_at"] <= attempts[0]["at"] <= step["ended_at"]
            assert all(a["duration_ms"] >= 0 for a in attempts)
            # The last attempt (or the probe) gave the step's result; the others did not.
            last = step["probes"][-1]["found"] if step["probes"] else attempts[-1]["result"]
            assert last == step["result"] or step["result"] == "unknown"
            assert all(a["result"] in ("lost", "unknown") for a in attempts[:-1])
            assert all(a["error"] for a in attempts if a["result"] == "lost")
            results |= {a["result"] for a in attempts}
            retries += len(attempts) - 1
        assert retries == view["retries"]  # (the outcome line was printed at the decision)
    assert {"applied", "lost"} <= results
    text = ordersaga("sagas", "show", retried["order_id"], "--data-dir", data).out
    assert "attempt 2" in text and "(injected)" in text
