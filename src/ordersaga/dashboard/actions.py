"""The dashboard's changing side: signing in with the operator token, and operator actions.

Each change is a same-origin ``POST`` with a JSON body (see :mod:`.auth` for why that keeps
other sites out). An action runs the very repair ``ordersaga sagas retry|resolve|cancel`` runs
(:mod:`ordersaga.ops.repair`): checked against what the log says, applied with its record (who,
when, why) atomically, refused with the reason when the saga moved on meanwhile.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ordersaga.dashboard.auth import COOKIE, SESSION_SECONDS, same_origin
from ordersaga.dashboard.state import Dashboard
from ordersaga.errors import ConfigError, StorageError
from ordersaga.ops import repair
from ordersaga.ops.views import saga_view

__all__ = ["act", "set_session", "sign_in", "sign_out"]

ACTIONS = ("retry", "resolve", "cancel")
_MAX_BODY = 16_384
_MAX_TEXT = 500


def _error(code: int, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=code)


async def _json_body(request: Request) -> dict[str, Any] | Response:
    """The request's JSON object, or the error response (wrong origin, type, size, shape)."""
    if not same_origin(request):
        return _error(403, "a change must come from the dashboard's own pages")
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        return _error(415, "send the change as application/json")
    raw = await request.body()
    if len(raw) > _MAX_BODY:
        return _error(413, "the body is too large")
    try:
        body = json.loads(raw)
    except ValueError:
        return _error(400, "the body is not JSON")
    if not isinstance(body, dict):
        return _error(400, "the body must be a JSON object")
    return body


def _text(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > _MAX_TEXT:
        raise ValueError(f"{key} must be a string of at most {_MAX_TEXT} characters")
    return value.strip() or None


def _cookie_path(request: Request) -> str:
    return (str(request.scope.get("root_path", "")).rstrip("/")) + "/"


async def sign_in(state: Dashboard, request: Request) -> Response:
    state.counts.requests["sign_in"] += 1
    body = await _json_body(request)
    if isinstance(body, Response):
        return body
    if not state.operators.enabled:
        return _error(403, "read-only: this dashboard was started without an operator token")
    try:
        token = _text(body, "token") or ""
        name = _text(body, "name") or "operator"
    except ValueError as exc:
        return _error(400, str(exc))
    if not name.isprintable() or len(name) > 64:
        return _error(400, "name: at most 64 printable characters")
    wait = state.sign_ins.wait(request)
    if wait is not None:
        refused = _error(429, f"too many failed sign-ins: wait {wait} s")
        refused.headers["Retry-After"] = str(wait)
        return refused
    if not state.operators.check_token(token):
        state.sign_ins.failed(request)
        return _error(401, "that is not the operator token")
    response = JSONResponse({"operator": name})
    set_session(response, request, state.operators.sign_in(name))
    return response


def set_session(response: Response, request: Request, session: str) -> None:
    """Give the browser the session cookie (script cannot read it, other sites cannot send it)."""
    response.set_cookie(
        COOKIE,
        session,
        max_age=int(SESSION_SECONDS),
        path=_cookie_path(request),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


async def sign_out(state: Dashboard, request: Request) -> Response:
    body = await _json_body(request)
    if isinstance(body, Response):
        return body
    state.operators.sign_out(request.cookies.get(COOKIE))
    response = JSONResponse({"operator": None})
    response.delete_cookie(COOKIE, path=_cookie_path(request), httponly=True, samesite="strict")
    return response


async def act(state: Dashboard, request: Request) -> Response:
    """Retry, resolve or cancel one saga, as the signed-in operator."""
    body = await _json_body(request)
    if isinstance(body, Response):
        return body
    action = body.get("action")
    if action not in ACTIONS:
        return _error(400, f"action must be one of {', '.join(ACTIONS)}")
    if not state.operators.enabled:
        state.counts.actions[(action, "refused")] += 1
        return _error(403, "read-only: this dashboard was started without an operator token")
    who = state.operators.who(request)
    if who is None:
        state.counts.actions[(action, "refused")] += 1
        return _error(401, "sign in with the operator token first")
    try:
        saga_id = _text(body, "saga_id")
        note = _text(body, "note")
        outcome = _text(body, "outcome")
    except ValueError as exc:
        return _error(400, str(exc))
    if saga_id is None:
        return _error(400, "saga_id: which saga?")
    if action == "resolve" and (note is None or outcome is None):
        return _error(400, "resolve needs an outcome and a note (why)")
    try:
        async with state.log.writer() as store:
            if action == "retry":
                entry = await repair.retry(store, saga_id, who, note)
            elif action == "cancel":
                entry = await repair.cancel(store, saga_id, who, note)
            else:
                assert outcome is not None and note is not None
                entry = await repair.resolve(store, saga_id, outcome, who, note)
    except ConfigError as exc:
        state.counts.actions[(action, "refused")] += 1
        return _error(409, str(exc))
    except StorageError as exc:
        state.counts.actions[(action, "failed")] += 1
        return _error(503, f"the saga log is unavailable: {exc}")
    state.counts.actions[(action, "applied")] += 1
    return JSONResponse(saga_view(entry))
