"""The dashboard app in process (httpx's ASGI transport) on a real SQLite data dir.

Pages, filters, pagination, card masking, the operator token and its sessions, the same-origin
rule, and ``/metrics``; the browser tests (test_browser.py) drive the same through Chromium.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from ordersaga.dashboard import DashboardSettings, OwnLog, create_dashboard
from tests.e2e.conftest import ordersaga
from tests.promtool import promtool_check

from .conftest import CARD, STUCK, TOKEN

BASE = "http://127.0.0.1:8080"


@asynccontextmanager
async def _serve(sqlite_log: Path, token: str | None) -> AsyncIterator[httpx.AsyncClient]:
    app = create_dashboard(OwnLog(sqlite_log, None), DashboardSettings(token=token))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as started:
            yield started


@pytest.fixture
async def client(sqlite_log: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with _serve(sqlite_log, TOKEN) as started:
        yield started


@pytest.fixture
async def read_only(sqlite_log: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with _serve(sqlite_log, None) as started:
        yield started


def _rows(html: str) -> list[str]:
    return re.findall(r'<tr data-order="([^"]+)">', html)


async def _all(client: httpx.AsyncClient, query: str = "") -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    cursor = ""
    while True:
        page = (await client.get(f"/api/sagas?limit=7{query}{cursor}")).json()
        rows += page["sagas"]
        if page["next_cursor"] is None:
            return rows
        cursor = f"&cursor={page['next_cursor']}"


async def test_the_list_filters_and_pages_from_the_query_string(client: httpx.AsyncClient) -> None:
    everything = await _all(client)
    assert len(everything) == 63 and len({r["order_id"] for r in everything}) == 63
    page = await client.get("/")
    assert page.status_code == 200
    assert _rows(page.text) == [r["order_id"] for r in everything[:50]]
    following = re.search(r'rel="next" href="([^"]+)"', page.text)
    assert following is not None
    second = await client.get(following[1].replace("&amp;", "&"))
    assert _rows(second.text) == [r["order_id"] for r in everything[50:]]

    failed = {r["order_id"] for r in everything if r["status"] == "failed"}
    assert failed
    shown = await client.get("/?status=failed")
    assert set(_rows(shown.text)) == failed
    assert '<option value="failed" selected>' in shown.text
    assert _rows((await client.get("/?q=stuck-")).text) == ["stuck-2", "stuck-1"]
    assert _rows((await client.get("/?attention=1")).text) == ["stuck-1"]
    assert _rows((await client.get("/?status=running&q=stuck-2")).text) == ["stuck-2"]
    assert _rows((await client.get("/?older_than=1d")).text) == []
    assert "no saga matches these filters" in (await client.get("/?older_than=1d")).text

    for query, complaint in (
        ("status=lost", "status must be one of"),
        ("older_than=3+days", "not a duration"),
        ("limit=0", "limit must be"),
        ("cursor=abc", "cursor"),
    ):
        bad = await client.get(f"/?{query}")
        assert bad.status_code == 400 and complaint in bad.text, query
        assert complaint in (await client.get(f"/api/sagas?{query}")).json()["error"]


async def test_a_compensated_order_shows_its_compensations(client: httpx.AsyncClient) -> None:
    failed = await _all(client, "&status=failed")
    views = [(await client.get(f"/api/saga?id={r['order_id']}")).json() for r in failed]
    compensated = next(v for v in views if v["compensations"] > 0)
    page = await client.get(f"/sagas/{compensated['order_id']}")
    assert page.status_code == 200
    bars = re.findall(r'<g class="row" data-step="([^"]+)" data-phase="(\w+)"', page.text)
    assert ("reserve (compensate) · inventory", "compensate") in bars
    assert compensated["reason"] in page.text
    assert f'data-field="compensations">{compensated["compensations"]}<' in page.text
    missing = await client.get("/sagas/no-such-order")
    assert missing.status_code == 404 and "no saga &#39;no-such-order&#39;" in missing.text


async def test_card_numbers_are_masked_everywhere(client: httpx.AsyncClient) -> None:
    bodies = [
        (await client.get(path)).text
        for path in ("/", "/?q=card", "/sagas/card-1", "/api/saga?id=card-1", "/api/sagas",
                     "/api/overview")
    ]  # fmt: skip
    assert all(CARD not in body for body in bodies)
    # Sealed in the log, erased with the decision: the last four digits are all that is left.
    assert "card_last4" in bodies[2] and '"card_last4":"1111"' in bodies[3]


async def test_the_overview_counts_the_log(client: httpx.AsyncClient) -> None:
    summary = (await client.get("/api/overview")).json()
    everything = await _all(client)
    assert summary["total"] == len(everything)
    assert summary["in_flight"] == 2  # the two unfinished sagas
    assert summary["outcomes"]["failed"] == sum(r["status"] == "failed" for r in everything)
    assert summary["per_order"]["retries"] > 0  # the fault rate made calls retry
    assert summary["throughput"]["last_minute"] == len(everything) - 2
    assert [a["order_id"] for a in summary["needs_attention"]["sagas"]] == ["stuck-1"]
    assert {s["service"] for s in summary["services"]} == {"inventory", "shipping", "payment"}
    assert all(s["calls"] > 0 and s["state"] != "idle" for s in summary["services"])


async def test_pages_carry_a_csp_that_only_allows_this_server(client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert page.headers["x-frame-options"] == "DENY"
    assert "http" not in re.sub(r'href="/[^"]*"|src="/[^"]*"', "", page.text.split("<main>")[0])
    for asset in ("/static/dashboard.js", "/static/dashboard.css"):
        assert (await client.get(asset)).status_code == 200


async def _post(
    client: httpx.AsyncClient, path: str, body: object, **headers: str
) -> tuple[int, dict]:
    response = await client.post(
        path,
        content=json.dumps(body),
        headers={"Content-Type": "application/json", "Origin": "http://127.0.0.1:8080", **headers},
    )
    return response.status_code, response.json()


async def test_actions_need_the_token_a_session_and_the_same_origin(
    client: httpx.AsyncClient, read_only: httpx.AsyncClient, sqlite_log: Path
) -> None:
    retry = {"action": "retry", "saga_id": STUCK[1], "note": "service is back"}
    code, body = await _post(read_only, "/api/action", retry)
    assert code == 403 and "read-only" in body["error"]
    code, body = await _post(read_only, "/api/session", {"token": TOKEN})
    assert code == 403
    assert "Read-only" in (await read_only.get(f"/sagas/{STUCK[1]}")).text

    code, body = await _post(client, "/api/action", retry)
    assert code == 401 and "sign in" in body["error"]
    code, body = await _post(client, "/api/session", {"token": "guess", "name": "mallory"})
    assert code == 401 and "cookie" not in str(client.cookies)
    code, _ = await _post(client, "/api/session", {"token": TOKEN}, Origin="http://evil.example")
    assert code == 403
    plain = await client.post("/api/session", content=TOKEN, headers={"Content-Type": "text/plain"})
    assert plain.status_code == 415

    signed = await client.post(
        "/api/session",
        content=json.dumps({"token": TOKEN, "name": "alice"}),
        headers={"Content-Type": "application/json"},
    )
    assert signed.status_code == 200
    cookie = signed.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and TOKEN not in cookie
    assert "operator <strong>alice</strong>" in (await client.get(f"/sagas/{STUCK[1]}")).text
    code, _ = await _post(client, "/api/action", retry, Origin="http://evil.example")
    assert code == 403
    code, view = await _post(client, "/api/action", retry)
    assert code == 200, view
    assert [(a["action"], a["who"], a["note"]) for a in view["actions"]] == [
        ("retry", "alice", "service is back")
    ]
    # Recorded in the log: the CLI reads it back.
    shown = json.loads(ordersaga("sagas", "show", STUCK[1], "--data-dir", sqlite_log, "--json").out)
    assert [a["who"] for a in shown["actions"]] == ["alice"]

    finished = next(r for r in await _all(client, "&status=confirmed"))
    code, body = await _post(client, "/api/action", {**retry, "saga_id": finished["order_id"]})
    assert code == 409 and "nothing to retry" in body["error"]
    code, body = await _post(client, "/api/action", {"action": "resolve", "saga_id": STUCK[1]})
    assert code == 400 and "note" in body["error"]
    code, body = await _post(client, "/api/action", {"action": "drop", "saga_id": STUCK[1]})
    assert code == 400

    code, _ = await _post(client, "/api/session/end", {})
    assert code == 200
    code, _ = await _post(client, "/api/action", retry)
    assert code == 401  # signed out
    # A script may send the token itself.
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    code, view = await _post(client, "/api/action", {**retry, "note": None}, **bearer)
    assert code == 200 and view["actions"][-1]["who"] == "api"


async def test_metrics_are_prometheus_text_named_ordersaga(client: httpx.AsyncClient) -> None:
    await client.get("/")
    response = await client.get("/metrics")
    assert response.status_code == 200
    promtool_check(response.text, "dashboard /metrics")
    assert 'ordersaga_dashboard_requests_total{route="list"}' in response.text
    assert 'ordersaga_log_sagas{status="running"}' in response.text
    names = re.findall(r"^# TYPE (\S+)", response.text, re.MULTILINE)
    assert names and all(name.startswith("ordersaga_") for name in names)
