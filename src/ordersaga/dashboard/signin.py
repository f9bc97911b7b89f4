"""A private dashboard: nothing of the saga log is shown until the operator signs in.

A dashboard is *private* (:attr:`DashboardSettings.private`) when it is reachable from elsewhere:
at ``/ui`` of the order API, and ``ordersaga dashboard`` on a non-loopback address. Then every
page and every JSON read needs the operator — the same check as the operator actions
(:meth:`~ordersaga.dashboard.auth.Operators.who`: ``Authorization: Bearer <operator token>``,
compared in constant time, or the session cookie a sign-in set):

* a page asked for by a browser that is not signed in is redirected (303) to ``login``, a plain
  HTML form (no script needed) that posts the token to this server; a right token sets the
  ``HttpOnly``, ``SameSite=Strict`` session cookie and redirects back to the page first asked
  for (only ever a path of this dashboard: the form cannot be used to send anyone elsewhere);
* a JSON read without it answers 401 with ``WWW-Authenticate: Bearer``.

``/health``, ``/metrics`` (aggregate counts only, for the scraper) and ``/static`` stay open, as
on the services. The form's ``POST`` obeys the same-origin rule of :mod:`.auth`, so another site
cannot sign a browser in with a token of its choosing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs, quote

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from ordersaga.dashboard.actions import set_session
from ordersaga.dashboard.auth import same_origin
from ordersaga.dashboard.pages import page
from ordersaga.dashboard.state import Dashboard

__all__ = ["gate_json", "gate_page", "login_form", "login_submit"]

Handler = Callable[[Dashboard, Request], Awaitable[Response]]
_MAX_FORM = 4096


def _base(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def _locked(state: Dashboard, request: Request) -> bool:
    return state.settings.private and state.operators.who(request) is None


def gate_page(handler: Handler) -> Handler:
    """``handler`` behind the sign-in when the dashboard is private (a page: redirect)."""

    async def gated(state: Dashboard, request: Request) -> Response:
        if _locked(state, request):
            wanted = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            target = f"{_base(request)}/login?next={quote(wanted, safe='')}"
            return RedirectResponse(target, status_code=303)
        return await handler(state, request)

    return gated


def gate_json(handler: Handler) -> Handler:
    """``handler`` behind the sign-in when the dashboard is private (JSON: 401)."""

    async def gated(state: Dashboard, request: Request) -> Response:
        if _locked(state, request):
            return JSONResponse(
                {"error": "sign in: send Authorization: Bearer <operator token>"},
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="ordersaga dashboard"'},
            )
        return await handler(state, request)

    return gated


def _next(request: Request, wanted: str | None) -> str:
    """Where to go after signing in: a path of this dashboard, else its front page."""
    base = _base(request)
    if (
        wanted
        and wanted.startswith(f"{base}/")
        and not wanted.startswith("//")
        and "\\" not in wanted
        and wanted.isprintable()
    ):
        return wanted
    return f"{base}/"


def _from_here(request: Request) -> bool:
    """Whether the form was posted from a page of this server.

    A browser posting a form under ``Referrer-Policy: no-referrer`` sends ``Origin: null``; its
    ``Sec-Fetch-Site`` still says where the post comes from, so that is believed when present.
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None and request.headers.get("origin") == "null":
        return site == "same-origin"
    return same_origin(request)


def _form(
    state: Dashboard,
    request: Request,
    wanted: str,
    status: int = 200,
    error: str | None = None,
    name: str = "",
) -> Response:
    return page(state, request, "login.html", status, next=wanted, error=error, operator_name=name)


async def login_form(state: Dashboard, request: Request) -> Response:
    state.counts.requests["login"] += 1
    if not state.operators.enabled:
        return RedirectResponse(f"{_base(request)}/", status_code=303)
    return _form(state, request, _next(request, request.query_params.get("next")))


async def login_submit(state: Dashboard, request: Request) -> Response:
    """The login form's ``POST`` (``application/x-www-form-urlencoded``: name, token, next)."""
    state.counts.requests["sign_in"] += 1
    if not state.operators.enabled:
        return RedirectResponse(f"{_base(request)}/", status_code=303)
    if not _from_here(request):
        return _form(state, request, f"{_base(request)}/", 403, "sign in from this dashboard")
    raw = await request.body()
    if len(raw) > _MAX_FORM:
        return _form(state, request, f"{_base(request)}/", 413, "the form is too large")
    try:
        fields = parse_qs(raw.decode("utf-8"), max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        fields = {}
    wanted = _next(request, (fields.get("next") or [""])[0])
    token = (fields.get("token") or [""])[0].strip()
    name = (fields.get("name") or [""])[0].strip() or "operator"
    if not name.isprintable() or len(name) > 64:
        return _form(state, request, wanted, 400, "name: at most 64 printable characters")
    wait = state.sign_ins.wait(request)
    if wait is not None:
        response = _form(state, request, wanted, 429, f"too many failed sign-ins: wait {wait} s")
        response.headers["Retry-After"] = str(wait)
        return response
    if not token or not state.operators.check_token(token):
        state.sign_ins.failed(request)
        return _form(state, request, wanted, 401, "that is not the operator token", name)
    response = RedirectResponse(wanted, status_code=303)
    set_session(response, request, state.operators.sign_in(name))
    return response
