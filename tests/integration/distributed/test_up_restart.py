"""`ordersaga up` replaces a worker that died, and a closed terminal (SIGHUP) stops it cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import pg_server_url
from tests.integration.http.conftest import ordersaga_env

from .conftest import ordersaga
from .test_up import _alive, _drop

pytestmark = pytest.mark.pg


def _workers(store: str) -> dict[str, dict[str, object]]:
    code, out, err = ordersaga("workers", "--store", store, "--json")
    assert code == 0, err
    return {row["worker_id"]: row for row in map(json.loads, out.splitlines())}


def test_a_killed_worker_is_restarted_and_sighup_stops_everything(tmp_path: Path) -> None:
    admin = pg_server_url()
    prefix = f"ordersaga_test_up_{uuid.uuid4().hex[:8]}"
    temp = tmp_path / "tmp"
    temp.mkdir()
    err_path = tmp_path / "up.err"
    with err_path.open("wb") as err:
        up = subprocess.Popen(
            [sys.executable, "-m", "ordersaga", "up", "--pg", admin, "--workers", "1",
             "--base-port", "0", "--prefix", prefix, "--lease", "2", "--json",
             "--secrets-dir", str(tmp_path / "secrets")],
            stdout=subprocess.PIPE, stderr=err, env={**ordersaga_env(), "TMPDIR": str(temp)},
        )  # fmt: skip
    pids: list[int] = []
    try:
        assert up.stdout is not None
        stdout = up.stdout
        first: list[bytes] = []
        reader = threading.Thread(target=lambda: first.append(stdout.readline()))
        reader.start()
        reader.join(timeout=60)
        assert first and first[0], err_path.read_text()
        info = json.loads(first[0])
        store, worker = info["store"], f"{prefix}-w1"
        pids = list(info["pids"].values())
        old_pid = info["pids"][worker]
        assert _workers(store)[worker]["live"] is True

        os.kill(old_pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        seen: dict[str, dict[str, object]] = {}
        while time.monotonic() < deadline:
            seen = _workers(store)
            if seen.get(f"{worker}-r1", {}).get("live"):
                break
            time.sleep(0.2)
        restarted = seen[f"{worker}-r1"]
        assert restarted["live"] is True and restarted["pid"] != old_pid
        new_pid = restarted["pid"]
        assert isinstance(new_pid, int)
        pids.append(new_pid)
        log = err_path.read_text()
        assert f"restarting {worker}" in log and f"restarted as worker {worker}-r1" in log

        up.send_signal(signal.SIGHUP)  # the terminal closed
        assert up.wait(timeout=40) == 0, err_path.read_text()
        assert [pid for pid in pids if _alive(pid)] == []
        assert "ordersaga up: stopped" in err_path.read_text()
        assert list(temp.iterdir()) == []  # its temporary files are gone
        assert _workers(store)[f"{worker}-r1"]["live"] is False
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        asyncio.run(_drop(admin, prefix))
