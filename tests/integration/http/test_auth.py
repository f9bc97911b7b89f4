"""Service authentication on real `ordersaga serve` processes: every operation of each service's
OpenAPI answers 401 without the right bearer token and changes nothing; with it, it is served."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ordersaga.protocol.wire import encode_key
from tests.integration.http.conftest import (
    SERVICES,
    ServiceProcess,
    get_json,
    ordersaga_env,
    services_arg,
    sqlite_url,
)

TOKEN = "service-token-0123456789abcdefghij"
EXAMPLES: dict[str, dict[str, Any]] = {
    "reserve": {"order_id": "o1", "items": [{"item_id": "A", "quantity": 1}]},
    "prepare": {"order_id": "o1", "address": {"country": "US"}, "weight_kg": "1"},
    "authorize": {"order_id": "o1", "user_id": 1, "amount_cents": 100, "method": "PayPal"},
}


def _call(
    url: str, method: str, body: bytes | None, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body, headers=headers, method=method)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _snapshot(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    with sqlite3.connect(path) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {n: sorted(conn.execute(f"SELECT * FROM {n}"), key=repr) for n in names}


def _operations(service: ServiceProcess) -> list[tuple[str, str, bytes | None, dict[str, str]]]:
    """(method, path, body, headers) of every documented operation, with valid arguments."""
    code, schema = get_json(f"{service.url}/openapi.json")  # the documentation is public
    assert code == 200
    assert schema["components"]["securitySchemes"]["bearerToken"]["scheme"] == "bearer"
    operations = []
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            if path == "/health":
                assert "security" not in operation
                continue
            assert operation["security"] == [{"bearerToken": []}], (path, method)
            assert "401" in operation["responses"], (path, method)
            action = path.rsplit("/", 1)[-1]
            phase = {"reserve": "action", "prepare": "action", "authorize": "action"}
            key = f"saga-1:{action}:{phase.get(action, 'compensate')}"
            if action in ("commit", "schedule", "capture"):
                key = f"saga-1:{action}:confirm"
            headers = {"Idempotency-Key": encode_key(key), "Content-Type": "application/json"}
            body = json.dumps(EXAMPLES.get(action, {"order_id": "o1"})).encode()
            if method == "get":
                path = path.replace("{key}", encode_key("saga-1:reserve:action"))
                body, headers = None, {}
            operations.append((method.upper(), path, body, headers))
    return operations


@pytest.mark.parametrize("name", SERVICES)
def test_every_operation_needs_the_token_and_changes_nothing_without_it(
    name: str, tmp_path: Path, start_service: Callable[..., ServiceProcess]
) -> None:
    service = start_service(name, sqlite_url(tmp_path, name), token=TOKEN)
    db = tmp_path / f"{name}.db"
    operations = _operations(service)
    assert len(operations) >= 4  # the commands, the probe, the counters
    for method, path, body, headers in operations:
        for wrong in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {TOKEN}"}):
            before = _snapshot(db)
            code, answer_headers, _ = _call(service.url + path, method, body, headers | wrong)
            assert code == 401, (method, path, wrong)
            assert answer_headers["www-authenticate"].startswith("Bearer")
            assert _snapshot(db) == before, (method, path)
        right = {"Authorization": f"Bearer {TOKEN}"}
        code, _, answer = _call(service.url + path, method, body, headers | right)
        assert code != 401 and code < 500, (method, path, code, answer)
    assert get_json(f"{service.url}/health")[0] == 200  # no token needed


def test_run_sends_the_token_and_a_wrong_one_is_a_clear_error(
    tmp_path: Path, start_service: Callable[..., ServiceProcess]
) -> None:
    services = {
        name: start_service(name, sqlite_url(tmp_path / "services", name), token=TOKEN)
        for name in SERVICES
    }
    line = "Order 1, User 456, Items: [{A, 1}], Payment: PayPal, Address: 1 Main St, Paris, FR\n"

    def run(token: str | None, data_dir: str) -> subprocess.CompletedProcess[bytes]:
        args = ["run", "--data-dir", str(tmp_path / data_dir), "--services"]
        env = ordersaga_env(**({"ORDERSAGA_SERVICE_TOKEN": token} if token else {}))
        return subprocess.run(
            [sys.executable, "-m", "ordersaga", *args, services_arg(services)],
            input=line.encode(),
            capture_output=True,
            timeout=60,
            env=env,
        )

    done = run(TOKEN, "good")
    assert done.returncode == 0 and done.stdout == b"Order 1 confirmed\n", done.stderr
    for token in (None, "another-token-0123456789abcdef"):
        refused = run(token, f"bad-{token is None}")
        assert refused.returncode == 2, refused.stderr
        assert b"refused our token" in refused.stderr and b"Traceback" not in refused.stderr
        assert TOKEN.encode() not in refused.stderr


def test_serve_refuses_a_public_address_without_a_token(tmp_path: Path) -> None:
    args = ["serve", "inventory", "--host", "0.0.0.0", "--db", sqlite_url(tmp_path, "x")]
    done = subprocess.run(
        [sys.executable, "-m", "ordersaga", *args],
        capture_output=True,
        timeout=30,
        env=ordersaga_env(),
    )
    assert done.returncode == 2
    assert b"without a service token" in done.stderr and b"--insecure" in done.stderr
    assert not (tmp_path / "x.db").exists()
