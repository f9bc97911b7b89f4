"""A private dashboard (``/ui`` of the order API; ``ordersaga dashboard`` off loopback): nothing
of the saga log without the operator token — a bearer header for scripts, the sign-in form and
its session cookie for a browser. In process first, then a real server over loopback."""

from __future__ import annotations

import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from ordersaga.dashboard import DashboardSettings, OwnLog, create_dashboard
from ordersaga.dashboard.throttle import FAILURES_PER_MINUTE
from tests.e2e.conftest import ordersaga

from .conftest import CARD, STUCK, TOKEN, start_dashboard

BASE = "http://127.0.0.1:8080"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
JSON = {"Content-Type": "application/json"}


@pytest.fixture
async def private(sqlite_log: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = DashboardSettings(token=TOKEN, private=True)
    app = create_dashboard(OwnLog(sqlite_log, None), settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            yield client


def _form(**fields: str) -> str:
    return urllib.parse.urlencode(fields)


async def test_nothing_is_shown_before_signing_in(private: httpx.AsyncClient) -> None:
    for path in ("/", "/?status=failed", f"/sagas/{STUCK[0]}", "/sagas/card-1"):
        page = await private.get(path)
        assert page.status_code == 303, path
        assert page.headers["location"] == "/login?next=" + urllib.parse.quote(path, safe="")
    for path in ("/api/overview", "/api/sagas", f"/api/saga?id={STUCK[0]}"):
        answer = await private.get(path)
        assert answer.status_code == 401 and answer.headers["www-authenticate"].startswith("Bearer")
        assert STUCK[0] not in answer.text
        wrong = await private.get(path, headers={"Authorization": "Bearer not-it"})
        assert wrong.status_code == 401
    login = await private.get("/login?next=/sagas/stuck-1")
    assert login.status_code == 200 and 'name="token"' in login.text
    assert 'value="/sagas/stuck-1"' in login.text and "stuck-2" not in login.text
    # Open to anyone, as on the services: the health check, the scrape, the page's own assets.
    assert (await private.get("/health")).status_code == 200
    assert (await private.get("/metrics")).status_code == 200
    assert (await private.get("/static/dashboard.css")).status_code == 200


async def test_a_bearer_token_reads_and_the_form_signs_a_browser_in(
    private: httpx.AsyncClient,
) -> None:
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    rows = (await private.get("/api/sagas?limit=500", headers=bearer)).json()["sagas"]
    assert {STUCK[0], "card-1"} <= {r["order_id"] for r in rows}
    assert CARD not in (await private.get("/api/saga?id=card-1", headers=bearer)).text

    wrong = await private.post(
        "/login", content=_form(token="guess", name="eve", next="/"), headers=FORM
    )
    assert wrong.status_code == 401 and "not the operator token" in wrong.text
    assert "set-cookie" not in wrong.headers and "guess" not in wrong.text
    elsewhere = await private.post(
        "/login",
        content=_form(token=TOKEN, next="/"),
        headers={**FORM, "Origin": "http://evil.example"},
    )
    assert elsewhere.status_code == 403 and "set-cookie" not in elsewhere.headers
    for target in ("https://evil.example/", "//evil.example/", "/\\evil.example", "login"):
        sent = await private.post("/login", content=_form(token=TOKEN, next=target), headers=FORM)
        assert sent.status_code == 303 and sent.headers["location"] == "/", target
    private.cookies.clear()

    signed = await private.post(
        "/login", content=_form(token=TOKEN, name="dana", next=f"/sagas/{STUCK[0]}"), headers=FORM
    )
    assert signed.status_code == 303 and signed.headers["location"] == f"/sagas/{STUCK[0]}"
    cookie = signed.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and TOKEN.lower() not in cookie
    page = await private.get(f"/sagas/{STUCK[0]}")
    assert page.status_code == 200 and "operator <strong>dana</strong>" in page.text
    assert (await private.get("/api/overview")).status_code == 200
    out = await private.post(
        "/api/session/end", content="{}", headers={"Content-Type": "application/json"}
    )
    assert out.status_code == 200
    assert (await private.get("/api/overview")).status_code == 401  # signed out


async def test_failed_sign_ins_are_rate_limited_per_client_address(sqlite_log: Path) -> None:
    app = create_dashboard(OwnLog(sqlite_log, None), DashboardSettings(token=TOKEN, private=True))
    async with app.router.lifespan_context(app):

        def client(address: str) -> httpx.AsyncClient:
            transport = httpx.ASGITransport(app=app, client=(address, 40000))
            return httpx.AsyncClient(transport=transport, base_url=BASE)

        async with client("192.0.2.7") as guesser, client("192.0.2.8") as operator:
            # A right token never counts against its address.
            for _ in range(FAILURES_PER_MINUTE + 2):
                ok = await operator.post("/login", content=_form(token=TOKEN), headers=FORM)
                assert ok.status_code == 303
            for guess in range(FAILURES_PER_MINUTE):
                wrong = await guesser.post(
                    "/login", content=_form(token=f"guess-{guess}"), headers=FORM
                )
                assert wrong.status_code == 401
            # Past the limit even the right token is refused: a guesser learns nothing meanwhile.
            for path, body, headers in (
                ("/login", _form(token=TOKEN), FORM),
                ("/api/session", f'{{"token": "{TOKEN}"}}', JSON),
            ):
                paused = await guesser.post(path, content=body, headers=headers)
                assert paused.status_code == 429 and "too many failed sign-ins" in paused.text
                assert 1 <= int(paused.headers["retry-after"]) <= 60
                assert "set-cookie" not in paused.headers and TOKEN not in paused.text
            # Another address is not held back by this one's failures.
            other = await operator.post(
                "/api/session", content=f'{{"token": "{TOKEN}"}}', headers=JSON
            )
            assert other.status_code == 200 and "set-cookie" in other.headers
            wrong = await operator.post("/api/session", content='{"token": "x"}', headers=JSON)
            assert wrong.status_code == 401


def test_a_private_dashboard_needs_a_token() -> None:
    with pytest.raises(ValueError, match="operator token"):
        DashboardSettings(private=True)


def _open(url: str, data: bytes | None = None) -> tuple[int, str, dict[str, str]]:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), NoRedirect())
    request = urllib.request.Request(url, data=data)
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, response.read().decode(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), dict(exc.headers)


def test_off_loopback_the_dashboard_needs_the_token_to_read(
    sqlite_log: Path, tmp_path: Path
) -> None:
    refused = ordersaga("dashboard", "--data-dir", sqlite_log, "--host", "0.0.0.0", timeout=30)
    assert refused.code == 2 and "without an operator token" in refused.err
    assert "--insecure" in refused.err and refused.err.count("\n") == 1

    served = start_dashboard(
        "--data-dir", str(sqlite_log), "--host", "0.0.0.0", log_dir=tmp_path, token=TOKEN
    )
    try:
        code, _, headers = _open(f"{served.url}/?status=failed")
        assert code == 303 and headers["location"] == "/login?next=%2F%3Fstatus%3Dfailed"
        code, body, _ = _open(f"{served.url}/api/overview")
        assert code == 401 and "total" not in body
        code, _, _ = _open(f"{served.url}/metrics")
        assert code == 200
        form = _form(token=TOKEN, name="ops", next="/?status=failed").encode()
        code, _, headers = _open(f"{served.url}/login", form)
        assert code == 303 and headers["location"] == "/?status=failed"
        session = headers["set-cookie"].split(";")[0]
        request = urllib.request.Request(f"{served.url}/api/overview", headers={"Cookie": session})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=10) as response:
            assert response.status == 200 and b'"total"' in response.read()
        assert TOKEN not in served.output()
    finally:
        served.proc.terminate()
        try:
            served.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            served.proc.kill()

    insecure = start_dashboard(
        "--data-dir", str(sqlite_log), "--host", "0.0.0.0", "--insecure", log_dir=tmp_path
    )
    try:
        code, page, _ = _open(f"{insecure.url}/")
        assert code == 200 and "read-only" in page  # the operator chose to open it
    finally:
        insecure.proc.terminate()
        insecure.proc.wait(timeout=10)
