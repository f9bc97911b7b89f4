"""A participant service as an ASGI app: commands, status probes, health, stats, OpenAPI.

:func:`create_app` builds one FastAPI app around one participant (no globals: two apps in one
process are independent). Routes::

    POST /commands/{action}   run a command; Idempotency-Key header, JSON payload as the body
    POST /commands            run a batch of commands in one group commit, one reply each
                              (:mod:`ordersaga.protocol.batchwire`)
    GET  /keys/{key}          status probe: {"state": "applied"|"refused"|"unknown", "reply"}
    GET  /health              200 when the service's database answers, else 503
    GET  /stats               the service's counters (commands, commits, conflicts, ...)
    GET  /metrics             the same and more in the Prometheus text format (ordersaga_*)
    GET  /openapi.json        the OpenAPI schema (and /docs, its browsable form)

With a ``token``, every route but ``/health``, ``/metrics`` and the documentation answers
``401`` (``WWW-Authenticate: Bearer``) to a request without ``Authorization: Bearer <token>``,
before anything is read or done (:mod:`ordersaga.participant.auth`).

Status codes of ``POST /commands/{action}`` (the table lives in :mod:`ordersaga.protocol.wire`,
which the HTTP transport reads back with)::

    200 ok          applied, now or earlier (a repeat replays the stored reply)
    400 invalid     malformed: no/bad Idempotency-Key, body not JSON, payload breaks the schema,
                    key phase not the action's, unknown action
    409 conflict    the key was used before with a different request
    410 expired     first sent (``Sent-At``) longer ago than the message-age limit; nothing
                    applied, the status probe tells what earlier deliveries did
    413 invalid     the body is larger than ``max_body_bytes``
    422 refused     business refusal (definite; nothing applied)
    425 in_flight   the key is being processed right now (Retry-After)
    503             the database is unavailable; nothing applied (Retry-After)

Everything about a command but its transport framing (the ``Idempotency-Key`` header, the body
as JSON) is decided by the participant itself, so a command gets over HTTP exactly the reply it
gets in process. The body is read as UTF-8 JSON whatever its ``Content-Type``; ``NaN`` and
``Infinity`` are not JSON and are refused. Bad input never causes a 5xx: the participant answers
``invalid`` for any payload, and only a failing database (``StorageError``) yields 503.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from ordersaga import __version__
from ordersaga.errors import ConfigError
from ordersaga.participant.auth import PUBLIC_PATHS, PUBLIC_PREFIXES, BearerAuth
from ordersaga.participant.batchroute import add_batch_route, answer_batch
from ordersaga.participant.commandroute import add_command_routes, answer_command
from ordersaga.participant.docs import local_docs
from ordersaga.participant.openapi import add_bearer_security
from ordersaga.participant.readroutes import add_read_routes
from ordersaga.participant.served import Served
from ordersaga.protocol.batchwire import BATCH_PATH
from ordersaga.protocol.participant import Participant
from ordersaga.telemetry.tracing import Tracing

__all__ = ["DEFAULT_MAX_BODY_BYTES", "Opener", "create_app", "require_token"]


#: Raw request bodies above this are refused with 413 before they are parsed. The participant
#: refuses payloads above 64 KiB of canonical JSON anyway; this bounds what is read at all.
DEFAULT_MAX_BODY_BYTES = 256 * 1024


#: An async function that opens a participant (the app opens it at startup, closes it at exit).
Opener = Callable[[], Awaitable[Participant]]


def create_app(
    participant: Participant | Opener,
    *,
    name: str,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    tracing: Tracing | None = None,
    token: str | None = None,
) -> FastAPI:
    """An ASGI app serving ``participant`` as the service ``name``.

    ``participant`` is either an open participant, which the caller keeps and closes, or an
    async function that opens one: the app then opens it at startup and closes it at shutdown,
    in the server's event loop (where, for instance, a PostgreSQL pool must be created).
    With ``tracing``, each command runs in a server span continuing the caller's
    ``traceparent``.
    """
    if max_body_bytes < 1:
        raise ConfigError("max_body_bytes must be at least 1")
    opener: Opener | None = None
    if hasattr(participant, "handle"):
        ready = cast(Participant, participant)
        if ready.name != name:
            raise ConfigError(f"cannot serve the {ready.name} service as {name!r}")
        served = Served(name, ready, tracing)
    else:
        opener = participant
        served = Served(name, None, tracing)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if opener is None:
            yield
            return
        opened = await opener()
        if opened.name != name:
            await opened.close()
            raise ConfigError(f"cannot serve the {opened.name} service as {name!r}")
        served.attach(opened)
        try:
            yield
        finally:
            served.attach(None)
            await opened.close()

    app = FastAPI(
        title=f"ordersaga {name} service",
        version=__version__,
        description=_DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    local_docs(app)
    app.state.served = served

    async def on_validation_error(_request: Request, exc: Exception) -> Response:
        return served.invalid(f"malformed request: {exc}")

    app.add_exception_handler(RequestValidationError, on_validation_error)
    add_command_routes(app, served, max_body_bytes)
    add_batch_route(app, served, max_body_bytes)
    add_read_routes(app, served)
    if token is not None:
        require_token(app, [(token, "orchestrator")], "The service token (ORDERSAGA_SERVICE_TOKEN)")
    stack = app.build_middleware_stack

    def build() -> ASGIApp:
        return command_fast_path(app, stack(), served, max_body_bytes)

    app.build_middleware_stack = build  # type: ignore[method-assign]
    return app


def command_fast_path(app: FastAPI, stack: ASGIApp, served: Served, limit: int) -> ASGIApp:
    """``stack`` (the app's whole middleware stack), but for the command routes, answered by
    :class:`CommandFastPath` within the app's own middleware (``add_middleware``: the bearer
    token's :class:`BearerAuth`) and a :class:`ServerErrorMiddleware` as the app has it.

    An app with a request body limit of the framework's gets its whole stack for everything.
    """
    if getattr(app, "max_body_size", None) is not None:
        return stack
    answer = _CommandAnswer(served, limit)
    commands: ASGIApp = answer
    for cls, args, kwargs in reversed(app.user_middleware):
        commands = cls(commands, *args, **kwargs)
    handlers = app.exception_handlers
    on_error = handlers.get(500) or handlers.get(Exception)
    return CommandFastPath(stack, ServerErrorMiddleware(commands, on_error, app.debug))


class CommandFastPath:
    """An app's stack, but for the command routes, which go to ``commands``.

    ``POST /commands`` and ``POST /commands/{action}`` carry nearly every request a service gets,
    and their handlers read the request and build the response themselves: the framework's
    layers around them (exception telemetry, body limits, exception handlers, dependency exit
    stacks, routing) did nothing for them but cost a call or two each per request. ``commands``
    keeps what matters to them (:func:`command_fast_path`: the app's own middleware, so the
    token is checked first exactly as before, and a ``500`` for an unexpected error) and runs
    the very handlers the routes call, so each request gets the same response. Any other
    request, or a path the routes would not match (a slash more, another method), goes through
    the whole :attr:`stack`.
    """

    def __init__(self, stack: ASGIApp, commands: ASGIApp) -> None:
        self.stack = stack
        self.commands = commands

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            path = scope["path"]
            action = path[len(_ACTION) :] if path.startswith(_ACTION) else None
            if path == BATCH_PATH or (action and "/" not in action):
                await self.commands(scope, receive, send)
                return
        await self.stack(scope, receive, send)


class _CommandAnswer:
    """The command routes' handlers as a plain ASGI app (the path tells which)."""

    def __init__(self, served: Served, limit: int) -> None:
        self._served = served
        self._limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        path = scope["path"]
        if path == BATCH_PATH:
            response = await answer_batch(self._served, request, self._limit)
        else:
            action = path[len(_ACTION) :]
            response = await answer_command(self._served, request, action, self._limit)
        await response(scope, receive, send)


#: ``/commands/{action}``: any one path segment after it (what the route's ``{action}`` matches).
_ACTION = BATCH_PATH + "/"


def require_token(
    app: FastAPI,
    tokens: list[tuple[str, str]],
    description: str,
    public_prefixes: tuple[str, ...] = PUBLIC_PREFIXES,
) -> None:
    """Put ``app`` behind :class:`BearerAuth` (but the paths under ``public_prefixes``, which
    guard themselves) and say so in its OpenAPI schema."""
    app.add_middleware(BearerAuth, tokens=tokens, public_prefixes=public_prefixes)
    plain_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = add_bearer_security(plain_openapi(), PUBLIC_PATHS, description)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


_DESCRIPTION = """\
One participant of the order saga, with its own database. Every command carries an
`Idempotency-Key` (`<saga id>:<step>:<phase>`): it is applied at most once, and a repeat gets
the stored reply.

| code | reply status | meaning |
| --- | --- | --- |
| 200 | `ok` | applied, now or earlier (a repeat replays the stored reply) |
| 400 | `invalid` | malformed request (key, body, payload, action); nothing applied |
| 409 | `conflict` | the key was used before with a different request; nothing applied |
| 410 | `expired` | first sent (`Sent-At`) longer ago than the message-age limit; nothing applied |
| 413 | `invalid` | the body is too large; nothing applied |
| 422 | `refused` | business refusal: definite, nothing applied, never worth retrying |
| 425 | `in_flight` | the key is being processed right now; retry after `Retry-After` |
| 503 | - | the database is unavailable; nothing applied; retry the same key |
"""
