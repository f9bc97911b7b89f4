"""The dashboard's reading side: the pages and the JSON they refresh from.

Every handler takes the app's :class:`~ordersaga.dashboard.app.Dashboard` state and the request;
a saga log that does not answer is a 503 with the reason, a bad filter a 400 — never a traceback.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ordersaga.dashboard.filters import AGES, STATUSES, FilterError, ListFilter
from ordersaga.dashboard.overview import SAMPLE, overview
from ordersaga.dashboard.state import Dashboard
from ordersaga.dashboard.timeline import chart
from ordersaga.errors import StorageError
from ordersaga.ops.views import list_row, saga_view
from ordersaga.saga.store.base import SagaStatus

__all__ = ["health", "index", "overview_json", "page", "saga", "saga_json", "sagas_json"]


def base_path(request: Request) -> str:
    """Where the dashboard is mounted (``""``, or ``/ui`` in the order API)."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def _context(state: Dashboard, request: Request, **extra: Any) -> dict[str, Any]:
    return {
        "base": base_path(request),
        "log": state.log.description,
        "operator": state.operators.who(request),
        "operators_enabled": state.operators.enabled,
        "refresh_ms": int(state.settings.refresh_seconds * 1000),
        **extra,
    }


def _page(
    state: Dashboard, request: Request, name: str, status: int = 200, **extra: Any
) -> Response:
    context = _context(state, request, **extra)
    return state.templates.TemplateResponse(request, name, context, status_code=status)


page = _page  # for the other modules of the dashboard (the sign-in form)


def _unavailable(state: Dashboard, request: Request, exc: StorageError) -> Response:
    message = f"the saga log is unavailable: {exc}"
    return _page(state, request, "error.html", 503, title="Saga log unavailable", message=message)


async def index(state: Dashboard, request: Request) -> Response:
    """The overview and the (filtered) saga list."""
    state.counts.requests["list"] += 1
    try:
        listing = ListFilter.parse(request.query_params)
    except FilterError as exc:
        return _page(
            state,
            request,
            "index.html",
            400,
            error=str(exc),
            filter=ListFilter(),
            rows=[],
            next_cursor=None,
            summary=None,
            statuses=STATUSES,
            ages=AGES,
            sample=SAMPLE,
        )
    now = state.settings.clock()
    try:
        store = state.log.reader()
        page = await store.list_sagas(listing.saga_filter(now))
        summary = await overview(store, now)
    except StorageError as exc:
        return _unavailable(state, request, exc)
    return _page(
        state,
        request,
        "index.html",
        filter=listing,
        rows=[list_row(e) for e in page.entries],
        next_cursor=page.next_cursor,
        summary=summary,
        statuses=STATUSES,
        ages=AGES,
        sample=SAMPLE,
        error=None,
    )


def _actions_allowed(view: dict[str, Any]) -> list[str]:
    """The operator actions that make sense for the saga now (the repair re-checks)."""
    status = SagaStatus(view["status"])
    allowed = []
    if not status.terminal:
        allowed.append("retry")
    if status is SagaStatus.RUNNING:
        allowed.append("cancel")
    if status in (SagaStatus.RUNNING, SagaStatus.CONFIRMING):
        allowed.append("resolve confirmed")
    if status in (SagaStatus.RUNNING, SagaStatus.COMPENSATING):
        allowed.append("resolve failed")
    return allowed


async def saga(state: Dashboard, request: Request) -> Response:
    """One saga's page."""
    state.counts.requests["saga"] += 1
    saga_id = request.path_params["saga_id"]
    try:
        entry = await state.log.reader().inspect(saga_id)
    except StorageError as exc:
        return _unavailable(state, request, exc)
    if entry is None:
        message = f"no saga {saga_id!r} in the saga log"
        return _page(state, request, "error.html", 404, title="No such saga", message=message)
    view = saga_view(entry)
    return _page(
        state,
        request,
        "saga.html",
        view=view,
        chart=chart(entry),
        allowed=_actions_allowed(view),
    )


def _error(code: int, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=code)


async def overview_json(state: Dashboard, request: Request) -> Response:
    state.counts.requests["api_overview"] += 1
    try:
        summary = await overview(state.log.reader(), state.settings.clock())
    except StorageError as exc:
        return _error(503, f"the saga log is unavailable: {exc}")
    return JSONResponse(summary)


async def sagas_json(state: Dashboard, request: Request) -> Response:
    state.counts.requests["api_sagas"] += 1
    try:
        listing = ListFilter.parse(request.query_params)
    except FilterError as exc:
        return _error(400, str(exc))
    try:
        page = await state.log.reader().list_sagas(listing.saga_filter(state.settings.clock()))
    except StorageError as exc:
        return _error(503, f"the saga log is unavailable: {exc}")
    rows = [list_row(entry) for entry in page.entries]
    return JSONResponse({"sagas": rows, "next_cursor": page.next_cursor})


async def saga_json(state: Dashboard, request: Request) -> Response:
    state.counts.requests["api_saga"] += 1
    saga_id = request.query_params.get("id")
    if not saga_id:
        return _error(400, "id: which saga?")
    try:
        entry = await state.log.reader().inspect(saga_id)
    except StorageError as exc:
        return _error(503, f"the saga log is unavailable: {exc}")
    if entry is None:
        return _error(404, f"no saga {saga_id!r} in the saga log")
    return JSONResponse(saga_view(entry))


async def health(state: Dashboard, _request: Request) -> Response:
    try:
        await state.log.reader().count_by_status()
    except StorageError:
        body = {"status": "unavailable", "service": "dashboard", "reason": "saga log"}
        return JSONResponse(body, status_code=503)
    return JSONResponse({"status": "ok", "service": "dashboard"})
