"""Chromium, driven by Playwright, for the dashboard's browser tests — never a downloaded browser.

Debian's ``chromium`` package (``.ci/run`` installs it) is launched headless through
Playwright's Python package (its bundled driver; ``playwright install`` is never run). Every
request a page makes is recorded, so a test can prove that nothing left the machine. Where the
browser or the package is missing the tests skip with that reason — except under CI=true,
where they fail.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def chromium() -> str:
    """The browser's path, or a skip (a failure under CI=true) saying what is missing."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    problem = None if found else "no Chromium on this machine (apt-get install chromium)"
    if problem is None:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "the playwright package is missing (pip install -r requirements.lock)"
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{problem}; .ci/run should have installed it")
        pytest.skip(problem)
    assert found is not None
    return found


class Requests:
    """Every URL the pages of one browser context asked for."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    def record(self, request: Any) -> None:
        self.urls.append(request.url)

    def outside(self) -> list[str]:
        """The requests that went anywhere but this machine (data: URLs stay in the page)."""
        return [
            url
            for url in self.urls
            if urlsplit(url).scheme != "data" and urlsplit(url).hostname not in LOOPBACK
        ]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    path = chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=path, args=ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[tuple[Any, Requests]]:
    """A fresh context (no cookies) and its page; fails the test if a request left loopback."""
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    requests = Requests()
    context.on("request", requests.record)
    opened = context.new_page()
    opened.set_default_timeout(15_000)
    try:
        yield opened, requests
        assert requests.urls, "the page requested nothing"
        assert requests.outside() == [], "requests outside this machine"
    finally:
        context.close()


def screenshot(page: Any, directory: Path, name: str, *, full_page: bool = True) -> Path:
    """A PNG of the page under ``directory`` (and under $ORDERSAGA_SCREENSHOT_DIR when set)."""
    target = directory / f"{name}.png"
    page.screenshot(path=str(target), full_page=full_page)
    extra = os.environ.get("ORDERSAGA_SCREENSHOT_DIR")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        shutil.copy(target, Path(extra) / target.name)
    assert target.stat().st_size > 10_000
    return target
