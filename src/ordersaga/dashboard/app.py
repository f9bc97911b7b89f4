"""The dashboard's ASGI app: the pages, their JSON, the operator actions and ``/metrics``.

::

    GET  /                    overview (live) and the saga list; filters in the query string:
                              ?status=&attention=1&older_than=15m&q=ID-PREFIX&limit=&cursor=
    GET  /sagas/{id}          one saga: its timeline chart, steps, reason, operator actions
    GET  /api/overview        the overview's numbers (the page polls it)
    GET  /api/sagas           the list as JSON (same filters)
    GET  /api/saga?id=ID      one saga's view (``ordersaga sagas show --json``)
    GET|POST /login           the sign-in form of a private dashboard (:mod:`.signin`)
    POST /api/session         sign in with the operator token: {"token": ..., "name": ...}
    POST /api/session/end     sign out
    POST /api/action          {"action": retry|resolve|cancel, "saga_id", "note", "outcome"}
    GET  /health, /metrics    the log answers; Prometheus metrics (``ordersaga_*``)
    GET  /static/...          the page's own CSS and JS (nothing is fetched from elsewhere)

Read-only unless the process has an operator token (see :mod:`.auth`); private (every read
needs the operator signed in, :mod:`.signin`) when its settings say so. Every card number is
masked (:mod:`ordersaga.ops.views`). Every page is sent with a Content-Security-Policy that
lets the browser load nothing but this server's own files.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ordersaga import __version__
from ordersaga.dashboard import actions, pages
from ordersaga.dashboard.auth import Operators
from ordersaga.dashboard.log import SagaLog
from ordersaga.dashboard.metrics import dashboard_registry
from ordersaga.dashboard.signin import gate_json, gate_page, login_form, login_submit
from ordersaga.dashboard.state import Dashboard, DashboardSettings

__all__ = ["DashboardSettings", "create_dashboard"]

_SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        b" connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


class _SecurityHeaders:
    """Adds the security headers to every response (a plain ASGI middleware)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _templates() -> Jinja2Templates:
    env = Environment(
        loader=PackageLoader("ordersaga.dashboard", "templates"),
        autoescape=select_autoescape(["html"], default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["version"] = __version__
    return Jinja2Templates(env=env)


def create_dashboard(log: SagaLog, settings: DashboardSettings | None = None) -> Starlette:
    """The dashboard on ``log``; its startup opens the log, its shutdown closes it.

    Mounted in another app (the order API's ``/ui``), the mounting app's lifespan runs instead,
    so ``log`` is then one that app keeps open (:class:`~ordersaga.dashboard.log.SharedLog`).
    """
    settings = settings or DashboardSettings()
    state = Dashboard(log, settings, Operators(settings.token), _templates())
    registry = dashboard_registry(state.counts)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await log.start()
        try:
            yield
        finally:
            await log.stop()

    async def metrics(_request: Request) -> Response:
        from ordersaga.errors import StorageError
        from ordersaga.telemetry.exposition import CONTENT_TYPE

        try:
            state.counts.statuses = await log.reader().count_by_status()
        except StorageError:
            state.counts.statuses = None  # left out of this scrape
        return Response(registry.render(), headers={"Content-Type": CONTENT_TYPE})

    def bind(handler: Callable[[Dashboard, Request], Any]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            response: Response = await handler(state, request)
            return response

        return endpoint

    routes = [
        Route("/", bind(gate_page(pages.index)), methods=["GET"]),
        Route("/sagas/{saga_id:path}", bind(gate_page(pages.saga)), methods=["GET"]),
        Route("/api/overview", bind(gate_json(pages.overview_json)), methods=["GET"]),
        Route("/api/sagas", bind(gate_json(pages.sagas_json)), methods=["GET"]),
        Route("/api/saga", bind(gate_json(pages.saga_json)), methods=["GET"]),
        Route("/login", bind(login_form), methods=["GET"]),
        Route("/login", bind(login_submit), methods=["POST"]),
        Route("/api/session", bind(actions.sign_in), methods=["POST"]),
        Route("/api/session/end", bind(actions.sign_out), methods=["POST"]),
        Route("/api/action", bind(actions.act), methods=["POST"]),
        Route("/health", bind(pages.health), methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Mount(
            "/static",
            app=StaticFiles(packages=[("ordersaga.dashboard", "static")]),
            name="static",
        ),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.add_middleware(_SecurityHeaders)
    app.state.dashboard = state
    return app
