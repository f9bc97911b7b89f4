"""Telemetry of the real processes of `ordersaga up`: metrics on every endpoint, JSON logs.

After a stream submitted with `run --submit-only`, the workers' ``ordersaga_sagas_completed_total``
by outcome add up to the outcome lines printed; ``promtool check metrics`` is clean on the
API's, each service's and each worker's scrape; and with ``--log-format json`` every line `up`
relays parses as a JSON object, in which one order's life can be followed by its id.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import pg_server_url
from tests.integration.http.conftest import ordersaga_env
from tests.promtool import parse_samples, promtool_check

from .conftest import order, ordersaga
from .test_up import _drop

pytestmark = pytest.mark.pg


def _scrape(url: str) -> str:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        return str(response.read().decode())


def _completed(info: dict[str, object], workers: list[str]) -> Counter[str]:
    metrics = info["metrics"]
    assert isinstance(metrics, dict)
    total: Counter[str] = Counter()
    for worker in workers:
        samples = parse_samples(_scrape(metrics[worker]))
        for outcome in ("confirmed", "failed"):
            total[outcome] += int(
                samples[f'ordersaga_sagas_completed_total{{outcome="{outcome}"}}']
            )
    return total


def _stream(prefix: str) -> str:
    lines = []
    for i in range(24):
        item, country = ("C", "US") if i % 6 == 0 else ("A", "US")  # C is out of stock
        if i % 7 == 3:
            country = "ZZ"  # not served: refused by shipping, the reservation compensated
        line = order(f"{prefix}-{i}", 830_000 + i, item)
        lines.append(line.replace(", US", f", {country}"))
    return "\n".join(lines) + "\n"


def test_up_metrics_match_the_outcomes_and_logs_are_json(tmp_path: Path) -> None:
    admin = pg_server_url()
    prefix = f"ordersaga_test_tel_{uuid.uuid4().hex[:8]}"
    err_path = tmp_path / "up.err"
    with err_path.open("wb") as err:
        up = subprocess.Popen(
            [sys.executable, "-m", "ordersaga", "up", "--pg", admin, "--workers", "2",
             "--base-port", "0", "--prefix", prefix, "--lease", "2", "--json",
             "--fault-rate", "0.1", "--seed", "3", "--log-format", "json",
             "--secrets-dir", str(tmp_path / "secrets")],
            stdout=subprocess.PIPE, stderr=err, env=ordersaga_env(),
        )  # fmt: skip
    try:
        assert up.stdout is not None
        stdout = up.stdout
        first: list[bytes] = []
        reader = threading.Thread(target=lambda: first.append(stdout.readline()))
        reader.start()
        reader.join(timeout=60)
        assert first and first[0], err_path.read_text()
        info = json.loads(first[0])
        metrics = info["metrics"]
        assert sorted(metrics) == sorted(
            ["api", "inventory", "shipping", "payment", *info["workers"]]
        )

        code, out, err_text = ordersaga(
            "run", "--submit-only", "--store", info["store"], stdin=_stream("tel")
        )
        assert code == 0, err_text
        printed = Counter(line.rsplit(" ", 1)[1] for line in out.splitlines())
        assert sum(printed.values()) == 24 and printed["confirmed"] and printed["failed"]

        # "confirmed" is printed once the decision is durable; the confirmations may still run.
        deadline = time.monotonic() + 30
        while (completed := _completed(info, info["workers"])) != printed:
            assert time.monotonic() < deadline, (completed, printed)
            time.sleep(0.2)

        for name, url in metrics.items():
            text = _scrape(url)
            promtool_check(text, name)
            families = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
            assert all(f.startswith("ordersaga_") for f in families), (name, families)
        service = parse_samples(_scrape(metrics["shipping"]))
        assert (
            service[
                'ordersaga_service_commands_total{action="prepare",result="ok",service="shipping"}'
            ]
            > 0
        )
        assert (
            service[
                'ordersaga_service_commands_total{action="prepare",result="refused",service="shipping"}'
            ]
            > 0
        )
        api = parse_samples(_scrape(metrics["api"]))
        assert api['ordersaga_log_sagas{status="confirmed"}'] == printed["confirmed"]
        # Either worker may have claimed every saga: the durations add up across the workers.
        # Every order starts with a reservation, and each call of it is observed once.
        reserves = 0.0
        for name in info["workers"]:
            worker = parse_samples(_scrape(metrics[name]))
            reserves += worker.get(
                'ordersaga_step_duration_seconds_count{phase="action",step="reserve"}', 0.0
            )
        assert reserves >= sum(printed.values())

        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=40) == 0, err_path.read_text()
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        asyncio.run(_drop(admin, prefix))

    lines = err_path.read_text().splitlines()
    events = [json.loads(line) for line in lines]  # every line parses
    assert all(isinstance(e, dict) and "process" in e and "event" in e for e in events)
    assert "Order tel-3 failed" in out.splitlines()  # shipping refused ZZ: reserve undone
    life = [e for e in events if e.get("order_id") == "tel-3"]
    kinds = [e["event"] for e in life]
    assert kinds[0] in ("claim", "takeover"), kinds
    assert {"step", "decision", "compensation"} <= set(kinds) and kinds[-1] == "saga_end", kinds
    assert life[-1]["outcome"] == "failed" and all(e.get("worker") for e in life)
    assert {e["process"] for e in life} <= set(info["workers"])
    decision = next(e for e in life if e["event"] == "decision")
    assert decision["decision"] == "compensate"
    steps = [e for e in life if e["event"] in ("step", "compensation")]
    assert all({"step", "phase", "attempt", "status"} <= set(e) for e in steps)
    assert [e["step"] for e in life if e["event"] == "compensation"] == ["reserve"]
