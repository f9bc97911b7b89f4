"""The dashboard in a real browser (Debian's Chromium through Playwright), on a SQLite data dir.

Each test checks, on the way out, that every request the page made went to this machine.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import ordersaga
from tests.integration.http.conftest import ServiceProcess

from .browser import chromium, screenshot
from .conftest import CARD, STUCK, TOKEN, DashboardProcess, start_dashboard

Page = tuple[Any, Any]


@pytest.fixture(autouse=True, scope="module")
def _needs_a_browser() -> None:
    chromium()  # skips (fails under CI=true) before building the data dir


def _orders(page: Any) -> list[str]:
    return [
        row.get_attribute("data-order") for row in page.locator("#sagas tbody tr[data-order]").all()
    ]


def test_the_list_loads_filters_and_refreshes_live(
    dashboard: DashboardProcess, page: Page, tmp_path: Path
) -> None:
    tab, _ = page
    tab.goto(dashboard.url + "/")
    assert len(_orders(tab)) == 50
    assert tab.locator('[data-stat="total"]').inner_text() == "63"
    assert tab.locator('[data-stat="in_flight"]').inner_text() == "2"
    # The overview refreshes itself from /api/overview (every 0.5 s here).
    # (A locator, not wait_for_function: its polling evaluates a string, which the page's CSP
    # forbids — it failed whenever the first check came too early.)
    tab.locator("#refreshed").filter(has_text=re.compile("^refreshed")).wait_for()
    screenshot(tab, tmp_path, "dashboard", full_page=False)  # docs/dashboard.png

    tab.select_option('select[name="status"]', "failed")
    tab.click('form.filters button[type="submit"]')
    tab.wait_for_url("**/?status=failed**")
    failed = _orders(tab)
    assert failed and len(failed) < 50
    badges = tab.locator("#sagas tbody [data-status]").all_inner_texts()
    assert set(badges) == {"failed"}

    tab.goto(dashboard.url + "/?attention=1")  # a link carries its filter
    assert _orders(tab) == ["stuck-1"]
    assert tab.locator('input[name="attention"]').is_checked()
    tab.fill('input[name="q"]', "stuck-")
    tab.uncheck('input[name="attention"]')
    tab.click('form.filters button[type="submit"]')
    tab.wait_for_url("**q=stuck-**")
    assert _orders(tab) == ["stuck-2", "stuck-1"]


def test_the_detail_of_a_compensated_order_shows_its_compensation(
    dashboard: DashboardProcess, page: Page, tmp_path: Path
) -> None:
    tab, _ = page
    tab.goto(dashboard.url + "/?status=failed&limit=500")
    for order_id in _orders(tab):
        tab.goto(f"{dashboard.url}/sagas/{order_id}")
        if tab.locator('#timeline g[data-phase="compensate"]').count():
            break
    else:
        raise AssertionError("no failed order was compensated")
    bars = tab.locator('#timeline g[data-phase="compensate"]')
    assert bars.first.is_visible()
    assert "(compensate)" in bars.first.get_attribute("data-step")
    assert tab.locator('#steps tr[data-phase="compensate"]').count() == bars.count()
    assert int(tab.locator('[data-field="compensations"]').inner_text()) >= 1
    assert tab.locator('[data-field="reason"]').inner_text()
    screenshot(tab, tmp_path, "saga")

    tab.goto(f"{dashboard.url}/sagas/card-1")
    # The card was sealed in the log, then erased with the decision: its last four digits remain.
    assert (
        CARD not in tab.content()
        and '"card_last4": "1111"' in tab.locator("pre.input").inner_text()
    )


def test_an_operator_action_needs_the_token_and_is_recorded(
    dashboard: DashboardProcess, page: Page, sqlite_log: Path, tmp_path: Path
) -> None:
    tab, _ = page
    tab.goto(f"{dashboard.url}/sagas/{STUCK[0]}")
    assert tab.locator("button.act").count() == 0  # not signed in: no action offered
    refused = tab.evaluate(
        """async (id) => {
             const r = await fetch('/api/action', {method: 'POST',
               headers: {'Content-Type': 'application/json'},
               body: JSON.stringify({action: 'cancel', saga_id: id})});
             return r.status;
           }""",
        STUCK[0],
    )
    assert refused == 401

    tab.fill('#sign-in input[name="name"]', "carol")
    tab.fill('#sign-in input[name="token"]', "not the token")
    tab.click('#sign-in button[type="submit"]')
    tab.locator("#sign-in-error").filter(has_text="not the operator token").wait_for()
    tab.fill('#sign-in input[name="token"]', TOKEN)
    tab.click('#sign-in button[type="submit"]')
    tab.locator('button.act[data-action="cancel"]').wait_for()
    assert "carol" in tab.locator("#who").inner_text()

    tab.click('button.act[data-action="cancel"]')
    dialog = tab.locator("dialog#confirm")
    assert dialog.is_visible() and STUCK[0] in tab.locator("#confirm-title").inner_text()
    tab.click("#confirm-no")  # changed my mind: nothing happens
    assert not dialog.is_visible()
    tab.click('button.act[data-action="cancel"]')
    tab.fill('#confirm-form textarea[name="note"]', "customer cancelled by phone")
    screenshot(tab, tmp_path, "confirm")
    tab.click("#confirm-yes")
    tab.locator("#actions-log li", has_text="cancel").wait_for()
    assert "customer cancelled by phone" in tab.locator("#actions-log").inner_text()
    assert tab.locator("h1 [data-status]").inner_text() == "compensating"

    shown = ordersaga("sagas", "show", STUCK[0], "--data-dir", sqlite_log, "--json")
    view = json.loads(shown.out)
    assert view["status"] == "compensating"
    assert [(a["action"], a["who"], a["note"]) for a in view["actions"]] == [
        ("cancel", "carol", "customer cancelled by phone")
    ]


def test_a_private_dashboard_signs_a_browser_in_with_its_form(
    sqlite_log: Path, page: Page, tmp_path: Path
) -> None:
    private = start_dashboard(
        "--data-dir", str(sqlite_log), "--host", "0.0.0.0", log_dir=tmp_path, token=TOKEN
    )
    try:
        tab, _ = page
        tab.goto(f"{private.url}/sagas/{STUCK[1]}")
        tab.wait_for_url("**/login?next=**")
        assert STUCK[1] not in tab.locator("main").inner_text()
        tab.fill('#login input[name="name"]', "erin")
        tab.fill('#login input[name="token"]', "not the token")
        tab.click('#login button[type="submit"]')
        tab.locator("#login .error").filter(has_text="not the operator token").wait_for()
        tab.fill('#login input[name="token"]', TOKEN)
        tab.click('#login button[type="submit"]')
        tab.wait_for_url(f"**/sagas/{STUCK[1]}")
        assert "erin" in tab.locator("#who").inner_text()
        assert tab.locator('button.act[data-action="retry"]').count() == 1
        tab.goto(f"{private.url}/")  # the session holds for the other pages (and their JSON)
        tab.locator("#refreshed").filter(has_text=re.compile("^refreshed")).wait_for()
    finally:
        private.proc.terminate()
        private.proc.wait(timeout=10)


def test_a_service_swagger_ui_loads_from_the_service_itself(page: Page, tmp_path: Path) -> None:
    tab, requests = page
    service = ServiceProcess("inventory", f"sqlite:///{tmp_path / 'inventory.db'}", tmp_path)
    try:
        service.start()
        tab.goto(service.url + "/docs")
        tab.locator(".swagger-ui .info .title").filter(has_text="inventory").wait_for()
        tab.locator(".opblock").first.wait_for()
    finally:
        service.kill()
    assert any(url.endswith("/docs/static/swagger-ui-bundle.js") for url in requests.urls)
    assert any(url.endswith("/openapi.json") for url in requests.urls)
