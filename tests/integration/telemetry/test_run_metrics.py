"""`run --metrics-port`: the engine's, the saga log's and the in-process services' metrics."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import aiohttp

from ordersaga.local.runtime import RuntimeSettings, open_runtime
from ordersaga.local.telemetry import TelemetrySettings
from ordersaga.orders.order_saga import ORDER_SAGA_NAME
from tests.integration.http.conftest import ordersaga_env
from tests.promtool import parse_samples, promtool_check


def _order(order_id: str, country: str) -> dict[str, object]:
    return {
        "order_id": order_id,
        "user_id": 456,
        "items": [{"item_id": "A", "quantity": 1}],
        "payment_info": {"method": "PayPal"},
        "shipping_address": {"street": "1 Main St", "city": "Springfield", "country": country},
    }


async def test_run_serves_engine_log_and_service_metrics(tmp_path: Path) -> None:
    settings = RuntimeSettings(tmp_path / "data", telemetry=TelemetrySettings(metrics_port=0))
    runtime = await open_runtime(settings)
    try:
        for i, country in enumerate(["US", "US", "ZZ"]):
            await runtime.engine.start(ORDER_SAGA_NAME, f"m{i}", _order(f"m{i}", country), f"f{i}")
        assert runtime.services is not None
        participants = runtime.services.by_name()
        async with (
            runtime.telemetry.serving(runtime.engine, participants) as url,
            aiohttp.ClientSession(trust_env=False) as http,
            http.get(str(url)) as response,
        ):
            assert response.status == 200
            text = await response.text()
    finally:
        await runtime.close()
    promtool_check(text, "run")
    samples = parse_samples(text)
    assert samples['ordersaga_sagas_completed_total{outcome="confirmed"}'] == 2
    assert samples['ordersaga_sagas_completed_total{outcome="failed"}'] == 1
    assert samples['ordersaga_service_commands_applied_total{service="shipping"}'] >= 2
    assert samples['ordersaga_group_commit_batch_size_count{committer="saga_log"}'] >= 1
    assert samples['ordersaga_group_commit_batch_size_count{committer="inventory"}'] >= 1
    assert samples['ordersaga_breaker_state{service="payment",state="closed"}'] == 1


def test_a_taken_metrics_port_is_a_one_line_usage_error_and_creates_nothing(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "ordersaga", "run", "--data-dir", str(tmp_path / "d"),
             "--metrics-port", str(port)],
            input=b"", capture_output=True, timeout=60, env=ordersaga_env(),
        )  # fmt: skip
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert len(err.splitlines()) == 1 and f"--metrics-port {port}" in err, err
    assert not (tmp_path / "d").exists()  # refused before anything was created
