"""`ordersaga dashboard` through the CLI: refusals, the token file, a run executing beside it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.e2e.conftest import ordersaga
from tests.integration.dashboard.conftest import start_dashboard
from tests.integration.http.conftest import get_json


def test_refusals_are_one_line_and_create_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    result = ordersaga("dashboard", "--data-dir", missing, "--port", "0", timeout=30)
    assert result.code == 2 and "not an ordersaga data dir" in result.err
    assert result.err.count("\n") == 1 and not missing.exists()
    gone = ordersaga("dashboard", "--store", f"sqlite:///{tmp_path / 'x.db'}", timeout=30)
    assert gone.code == 2 and "no saga log" in gone.err
    empty = tmp_path / "token"
    empty.write_text("\n")
    bad = ordersaga("dashboard", "--data-dir", missing, "--token-file", empty, timeout=30)
    assert bad.code == 2 and "--token-file" in bad.err and "Traceback" not in bad.err
    unset = ordersaga("dashboard", "--data-dir", missing, env={"ORDERSAGA_OPERATOR_TOKEN": " "})
    assert unset.code == 2 and "ORDERSAGA_OPERATOR_TOKEN" in unset.err
    service = ordersaga("serve", "inventory", "--token-file", empty, timeout=30)
    # A service's --token-file is its service token: an empty one is refused.
    assert service.code == 2 and "token file" in service.err and "Traceback" not in service.err


def test_the_dashboard_reads_a_data_dir_while_a_run_executes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    run = subprocess.Popen(
        [sys.executable, "-m", "ordersaga", "run", "--data-dir", str(data)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    dashboard = None
    try:
        assert run.stdin is not None and run.stdout is not None
        run.stdin.write(b"Order live-1, User 7, Items: [{A, 1}], Payment: PayPal, Address: X, US\n")
        run.stdin.flush()
        assert run.stdout.readline() == b"Order live-1 confirmed\n"
        token = tmp_path / "token"
        token.write_text("t0ken\n")
        token.chmod(0o600)
        dashboard = start_dashboard(
            "--data-dir", str(data), "--token-file", str(token), log_dir=tmp_path
        )
        code, page = get_json(f"{dashboard.url}/api/sagas")
        assert code == 200 and [r["order_id"] for r in page["sagas"]] == ["live-1"]
        run.stdin.write(b"Order live-2, User 7, Items: [{C, 1}], Payment: PayPal, Address: X, US\n")
        run.stdin.flush()
        assert run.stdout.readline() == b"Order live-2 failed\n"
        code, view = get_json(f"{dashboard.url}/api/saga?id=live-2")  # the run's latest write
        assert code == 200 and view["status"] == "failed" and view["step"] == "reserve"
        assert run.poll() is None  # the run still executes the data dir
        run.stdin.close()
        assert run.wait(timeout=30) == 0
        assert "operator actions enabled" in dashboard.output()
        assert "t0ken" not in dashboard.output()
    finally:
        if dashboard is not None:
            dashboard.proc.terminate()
            dashboard.proc.wait(timeout=10)
        if run.poll() is None:
            run.kill()
    shown = json.loads(ordersaga("sagas", "show", "live-1", "--data-dir", data, "--json").out)
    assert shown["status"] == "confirmed"
