"""`ordersaga up`: the whole topology with one command, and Ctrl-C stops all of it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
import uuid
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import pg_server_url
from tests.integration.http.conftest import get_json, ordersaga_env

from .conftest import order, ordersaga

pytestmark = pytest.mark.pg


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return "zombie"


async def _drop(admin: str, prefix: str) -> None:
    conn = await asyncpg.connect(admin)
    try:
        for what in ("sagas", "inventory", "shipping", "payment"):
            await conn.execute(f'DROP DATABASE IF EXISTS "{prefix}_{what}" WITH (FORCE)')
    finally:
        await conn.close()


def test_up_serves_orders_and_ctrl_c_stops_every_process(tmp_path: Path) -> None:
    admin = pg_server_url()
    prefix = f"ordersaga_test_up_{uuid.uuid4().hex[:8]}"
    err_path = tmp_path / "up.err"
    with err_path.open("wb") as err:
        up = subprocess.Popen(
            [sys.executable, "-m", "ordersaga", "up", "--pg", admin, "--workers", "2",
             "--base-port", "0", "--prefix", prefix, "--lease", "2", "--json",
             "--secrets-dir", str(tmp_path / "secrets")],
            stdout=subprocess.PIPE, stderr=err, env=ordersaga_env(),
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
        pids = list(info["pids"].values())
        assert len(pids) == 6 and all(_alive(pid) for pid in pids)

        # up made an API key for the client "demo", in a file only its owner reads.
        keys_file = Path(info["api_keys"])
        assert keys_file.stat().st_mode & 0o777 == 0o600
        key, client = keys_file.read_text().split()
        assert client == "demo" and key not in first[0].decode()
        request = urllib.request.Request(
            f"{info['api']}/orders",
            data=order("up-1", 820_001, "A").encode(),
            headers={"Content-Type": "text/plain", "Authorization": f"Bearer {key}"},
            method="POST",
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=10) as response:
            assert response.status == 202
        assert get_json(f"{info['api']}/orders/up-1")[0] == 401  # no key
        # ... and an operator token for its dashboard at /ui, given to the API in its environment.
        token_file = Path(info["operator_token_file"])
        assert token_file.stat().st_mode & 0o777 == 0o600
        operator = token_file.read_text().strip()
        assert operator not in first[0].decode() and info["dashboard"] == f"{info['api']}/ui/"
        assert get_json(f"{info['api']}/ui/api/overview", token=key)[0] == 401
        assert get_json(f"{info['api']}/ui/api/overview", token=operator)[0] == 200
        code, view = get_json(f"{info['api']}/orders/up-1?wait=20", timeout=25, token=key)
        assert code == 200 and view["outcome"] == "confirmed", view

        stream = order("up-2", 820_002, "A") + "\n" + order("up-3", 820_003, "C") + "\n"
        store = info["store"]
        code, out, err_text = ordersaga("run", "--submit-only", "--store", store, stdin=stream)
        assert code == 0, err_text
        assert out.splitlines() == ["Order up-2 confirmed", "Order up-3 failed"]
        dbs = ",".join(f"{k}={v}" for k, v in info["service_dbs"].items())
        code, out, audit_err = ordersaga("audit", "--store", info["store"], "--service-dbs", dbs)
        assert code == 0, out + audit_err

        up.send_signal(signal.SIGINT)  # Ctrl-C
        assert up.wait(timeout=40) == 0, err_path.read_text()
        assert [pid for pid in pids if _alive(pid)] == []
        assert "ordersaga up: stopped" in err_path.read_text()
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        asyncio.run(_drop(admin, prefix))
