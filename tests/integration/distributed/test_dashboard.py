"""The dashboard on a PostgreSQL saga log while the topology's workers execute, and at /ui of
the order API (HTTP level; the browser tests run on a SQLite data dir)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import httpx
import pytest

from ordersaga.cluster.api import create_api
from ordersaga.dashboard import DashboardSettings
from ordersaga.saga.store import PostgresSagaStore
from tests.integration.dashboard.conftest import start_dashboard
from tests.integration.http.conftest import TEST_DATA_KEY, get_json, ordersaga_env
from tests.promtool import promtool_check

from .conftest import API_KEYS, OPERATOR_TOKEN, Topology, create_order, order

pytestmark = pytest.mark.pg


def _get(url: str) -> tuple[int, str]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as response:
        return response.status, response.read().decode()


def _rows(html: str) -> list[str]:
    return re.findall(r'<tr data-order="([^"]+)">', html)


def test_the_dashboard_reads_a_shared_log_while_workers_execute(
    topology: Topology, tmp_path: Path
) -> None:
    dashboard = start_dashboard("--store", topology.store, log_dir=tmp_path)
    try:
        ids = [f"dash-{i}" for i in range(30)]
        # K orders by users 8300xx; every third asks for C (out of stock): failed at reserve.
        lines = [order(i, 830_000 + n, "C" if n % 3 == 0 else "K") for n, i in enumerate(ids)]
        submit = subprocess.Popen(
            [sys.executable, "-m", "ordersaga", "run", "--submit-only", "--store",
             topology.store, "--json"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=ordersaga_env(),
        )  # fmt: skip
        assert submit.stdin is not None
        submit.stdin.write(("\n".join(lines) + "\n").encode())
        submit.stdin.flush()
        # While the workers execute: every page and its JSON answer.
        code, page = _get(f"{dashboard.url}/?q=dash-")
        assert code == 200 and set(_rows(page)) <= set(ids)
        code, summary = get_json(f"{dashboard.url}/api/overview")
        assert code == 200 and summary["total"] >= 0
        deadline = time.monotonic() + 60
        while not get_json(f"{dashboard.url}/api/sagas?q=dash-")[1]["sagas"]:
            assert time.monotonic() < deadline, "no saga showed up"
        out, err = submit.communicate(b"", timeout=120)
        assert submit.returncode == 0, err
        outcomes = {o["order_id"]: o for o in map(json.loads, out.decode().splitlines())}

        code, page = _get(f"{dashboard.url}/?q=dash-&limit=100")
        assert sorted(_rows(page)) == sorted(ids)
        code, page = _get(f"{dashboard.url}/?q=dash-&status=failed")
        failed = {i for i, o in outcomes.items() if o["status"] == "failed"}
        assert failed and set(_rows(page)) == failed
        code, page = _get(f"{dashboard.url}/sagas/dash-1")
        assert code == 200 and 'data-phase="confirm"' in page and "dash-1" in page
        code, view = get_json(f"{dashboard.url}/api/saga?id=dash-0")
        assert view["status"] == "failed" and view["step"] == "reserve"
        code, summary = get_json(f"{dashboard.url}/api/overview")
        assert summary["total"] >= len(ids) and summary["outcomes"]["failed"] >= len(failed)

        code, text = _get(f"{dashboard.url}/metrics")
        promtool_check(text, "dashboard /metrics on PostgreSQL")
        # Read-only: no token was given.
        request = urllib.request.Request(
            f"{dashboard.url}/api/action", method="POST",
            data=json.dumps({"action": "retry", "saga_id": "dash-2"}).encode(),
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with pytest.raises(urllib.error.HTTPError) as refused:
            opener.open(request, timeout=10)
        assert refused.value.code == 403
    finally:
        dashboard.proc.terminate()
        dashboard.proc.wait(timeout=10)


def _call(url: str, data: bytes | None = None, **headers: str) -> tuple[int, str, Any]:
    """(status, body, headers) of one request, redirects not followed."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), NoRedirect())
    try:
        with opener.open(urllib.request.Request(url, data, headers), timeout=10) as response:
            return response.status, response.read().decode(), response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), exc.headers


def test_the_order_api_serves_the_dashboard_at_ui_and_its_docs_locally(
    topology: Topology,
) -> None:
    ui = f"{topology.api_url}/ui"
    # The operator's only: nothing without the operator token (an API key is not it).
    code, _, headers = _call(f"{ui}/?status=failed")
    assert code == 303 and headers["location"] == "/ui/login?next=%2Fui%2F%3Fstatus%3Dfailed"
    alice = f"Bearer {next(iter(API_KEYS))}"
    for auth in ({}, {"Authorization": alice}):
        code, body, headers = _call(f"{ui}/api/overview", **auth)
        assert code == 401 and "statuses" not in body and "Bearer" in headers["WWW-Authenticate"]
    code, summary = get_json(f"{ui}/api/overview", token=OPERATOR_TOKEN)
    assert code == 200 and "statuses" in summary
    # A browser signs in with the form; the cookie is for /ui only.
    form = urllib.parse.urlencode({"token": OPERATOR_TOKEN, "next": "/ui/"}).encode()
    code, _, headers = _call(f"{ui}/login", form)
    assert code == 303 and headers["location"] == "/ui/"
    cookie = headers["Set-Cookie"]
    assert "Path=/ui/" in cookie and OPERATOR_TOKEN not in cookie
    code, page, _ = _call(f"{ui}/", Cookie=cookie.split(";")[0])
    assert code == 200 and 'href="/ui/static/dashboard.css"' in page
    assert _get(f"{ui}/static/dashboard.js")[0] == 200
    code, docs = _get(f"{topology.api_url}/docs")
    assert code == 200 and "/docs/static/swagger-ui-bundle.js" in docs
    assert "cdn" not in docs.lower() and "https://" not in docs
    assert _get(f"{topology.api_url}/docs/static/swagger-ui-bundle.js")[0] == 200
    assert _get(f"{topology.api_url}/docs/static/swagger-ui.css")[0] == 200


async def test_an_operator_action_at_ui_goes_through_the_apis_log(
    store: PostgresSagaStore,
) -> None:
    await create_order(store, "ui-1", saga_id="alice,ui-1")  # alice's order, by the API
    app = create_api(
        store, API_KEYS, bytes.fromhex(TEST_DATA_KEY), ui=DashboardSettings(token="tok")
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            locked = await client.get("/ui/?status=running")
            assert locked.status_code == 303  # private: a token makes the dashboard private
            headers = {"Content-Type": "application/json"}
            body = json.dumps({"action": "cancel", "saga_id": "alice,ui-1", "note": "duplicate"})
            refused = await client.post("/ui/api/action", content=body, headers=headers)
            assert refused.status_code == 401
            signed = await client.post(
                "/ui/api/session", content=json.dumps({"token": "tok", "name": "dan"}),
                headers=headers,
            )  # fmt: skip
            assert signed.status_code == 200 and "Path=/ui/" in signed.headers["set-cookie"]
            page = await client.get("/ui/?status=running")
            assert _rows(page.text) == ["alice,ui-1"]  # the operator sees every saga
            done = await client.post("/ui/api/action", content=body, headers=headers)
            assert done.status_code == 200, done.text
            assert done.json()["status"] == "compensating"
            alice = {"Authorization": f"Bearer {next(iter(API_KEYS))}"}
            assert (await client.get("/orders/ui-1")).status_code == 401  # the API needs a key
            view = (await client.get("/orders/ui-1", headers=alice)).json()
            assert [(a["action"], a["who"]) for a in view["actions"]] == [("cancel", "dan")]


async def test_without_an_operator_token_the_api_serves_no_dashboard(
    store: PostgresSagaStore,
) -> None:
    await create_order(store, "ui-2", saga_id="alice,ui-2")
    off = create_api(store, API_KEYS, bytes.fromhex(TEST_DATA_KEY), ui=None)
    opened = create_api(store, API_KEYS, bytes.fromhex(TEST_DATA_KEY), ui=DashboardSettings())
    for app, code in ((off, 404), (opened, 200)):  # opened: `serve api --insecure`, read-only
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as c:
                for path in ("/ui/", "/ui/api/sagas", "/ui/sagas/alice,ui-2"):
                    answer = await c.get(path)
                    assert answer.status_code == code, (path, answer.text)
                    assert ("alice,ui-2" in answer.text) is (code == 200)
                if code == 404:
                    assert "operator token" in answer.json()["error"]
