"""A participant service as an ASGI app: commands, status probes, health, stats, OpenAPI.

:func:`create_app` builds one FastAPI app around one participant (no globals: two apps in one
process are independent). Routes::

    POST /commands/{action}   run a command; Idempotency-Key header, JSON payload as the body
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

import asyncio
import dataclasses
import json
import logging
import re
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.requests import ClientDisconnect

from ordersaga import __version__
from ordersaga.errors import ConfigError, StorageError
from ordersaga.participant.auth import PUBLIC_PATHS, PUBLIC_PREFIXES, BearerAuth
from ordersaga.participant.docs import local_docs
from ordersaga.participant.openapi import (
    PROBE_SCHEMA,
    REQUEST_TIMEOUT,
    SERVICE_ACTIONS,
    UNAVAILABLE_SCHEMA,
    ActionDoc,
    add_bearer_security,
    command_responses,
    key_parameter,
)
from ordersaga.protocol.messages import MAX_KEY_LENGTH, Command, Reply, ReplyStatus
from ordersaga.protocol.participant import Participant
from ordersaga.protocol.wire import (
    CODE_OF_STATUS,
    IDEMPOTENCY_KEY,
    SENT_AT,
    TOO_LARGE,
    UNAVAILABLE,
    decode_key,
    decode_sent_at,
)
from ordersaga.telemetry.tracing import TRACEPARENT, Tracing

__all__ = [
    "BODY_TIMEOUT_SECONDS",
    "DEFAULT_MAX_BODY_BYTES",
    "Opener",
    "create_app",
    "read_body",
    "require_token",
]

log = logging.getLogger(__name__)

#: Raw request bodies above this are refused with 413 before they are parsed. The participant
#: refuses payloads above 64 KiB of canonical JSON anyway; this bounds what is read at all.
DEFAULT_MAX_BODY_BYTES = 256 * 1024
#: A request body must arrive whole within this many seconds of its headers, else 408.
BODY_TIMEOUT_SECONDS = 30.0
RETRY_AFTER_SECONDS = "1"
#: The key the health check probes: a well-formed key no saga uses (its step is "health").
HEALTH_KEY = "ordersaga-health:health:action"

#: An async function that opens a participant (the app opens it at startup, closes it at exit).
Opener = Callable[[], Awaitable[Participant]]


class _Json(JSONResponse):
    """JSON with ASCII escapes: a reply that echoes odd input can always be encoded."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False).encode("ascii")


class _Served:
    """The participant an app serves, and what the app counted (per app, never global)."""

    def __init__(
        self, name: str, participant: Participant | None, tracing: Tracing | None = None
    ) -> None:
        self.name = name
        self._participant = participant
        self.codes: Counter[int] = Counter()
        self.commands: Counter[tuple[str, str]] = Counter()  # (action, result)
        self.actions = frozenset(doc.name for doc in SERVICE_ACTIONS.get(name, ()))
        self.tracing = tracing

    @property
    def participant(self) -> Participant:
        if self._participant is None:
            raise RuntimeError(f"the {self.name} app has not started (no participant yet)")
        return self._participant

    def attach(self, participant: Participant | None) -> None:
        self._participant = participant

    def answer(self, reply: Reply) -> Response:
        retry = reply.status is ReplyStatus.IN_FLIGHT
        headers = {"Retry-After": RETRY_AFTER_SECONDS} if retry else None
        return self.respond(CODE_OF_STATUS[reply.status], reply.to_json(), headers)

    def invalid(self, reason: str, code: int = CODE_OF_STATUS[ReplyStatus.INVALID]) -> Response:
        return self.respond(code, Reply.invalid(reason).to_json())

    def unavailable(self, exc: StorageError) -> Response:
        log.warning("%s: database unavailable: %s", self.name, exc)
        body = {"status": "unavailable", "reason": f"{self.name}: database unavailable"}
        return self.respond(UNAVAILABLE, body, {"Retry-After": RETRY_AFTER_SECONDS})

    def respond(self, code: int, body: Any, headers: dict[str, str] | None = None) -> Response:
        self.codes[code] += 1
        return _Json(body, status_code=code, headers=headers)


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
        served = _Served(name, ready, tracing)
    else:
        opener = participant
        served = _Served(name, None, tracing)

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
    _add_command_routes(app, served, max_body_bytes)
    _add_read_routes(app, served)
    if token is not None:
        require_token(app, [(token, "orchestrator")], "The service token (ORDERSAGA_SERVICE_TOKEN)")
    return app


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


def _add_command_routes(app: FastAPI, served: _Served, max_body_bytes: int) -> None:
    def endpoint(action: str | None) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            name = action if action is not None else request.path_params["action"]
            return await _command(served, request, name, max_body_bytes)

        return run

    for doc in SERVICE_ACTIONS.get(served.name, ()):
        app.add_api_route(
            f"/commands/{doc.name}",
            endpoint(doc.name),
            methods=["POST"],
            summary=doc.summary,
            operation_id=f"{served.name}_{doc.name}",
            tags=["commands"],
            response_class=_Json,
            responses=command_responses(doc),
            openapi_extra=_command_openapi(doc),
        )
    # Any other action: the participant answers it (``invalid``: unknown action), like in process.
    app.add_api_route(
        "/commands/{action}", endpoint(None), methods=["POST"], include_in_schema=False
    )


def _command_openapi(doc: ActionDoc) -> dict[str, Any]:
    return {
        "parameters": [key_parameter(doc.phase)],
        "requestBody": {
            "required": True,
            "description": f"The {doc.name} payload (a {doc.phase.value} command).",
            "content": {"application/json": {"schema": doc.schema, "example": doc.example}},
        },
    }


async def _command(served: _Served, request: Request, action: str, limit: int) -> Response:
    header = request.headers.get(IDEMPOTENCY_KEY)
    if header is None:
        return served.invalid(f"missing {IDEMPOTENCY_KEY} header")
    try:
        key = decode_key(header)
    except ValueError as exc:
        return served.invalid(str(exc))
    try:
        raw = await read_body(request, limit)
    except ClientDisconnect:
        log.info("%s: a client went away before sending the whole body", served.name)
        return served.invalid("the client went away before sending the whole body")
    except TimeoutError:
        log.info("%s: a body did not arrive within %g s", served.name, BODY_TIMEOUT_SECONDS)
        return served.invalid("the body did not arrive in time", REQUEST_TIMEOUT)
    if raw is None:
        return served.invalid(f"request body is larger than {limit} bytes", TOO_LARGE)
    try:
        payload = _parse_json(raw)
    except ValueError as exc:
        return served.invalid(f"request body is not JSON: {exc}")
    sent_at = None
    if (stamp := request.headers.get(SENT_AT)) is not None:
        try:
            sent_at = decode_sent_at(stamp)
        except ValueError:
            return served.invalid(f"{SENT_AT} must be a number of seconds since the epoch")
    # The participant validates everything else (a non-object payload included).
    command = Command(served.name, action, key, cast(Any, payload), sent_at)
    label = action if action in served.actions else "other"  # bounded label values
    if served.tracing is None:
        return await _handle(served, command, label)
    with served.tracing.span(
        f"{served.name} {label}",
        traceparent=request.headers.get(TRACEPARENT),
        kind="server",
        attributes={"ordersaga.service": served.name, "ordersaga.key": key},
    ) as span:
        response = await _handle(served, command, label)
        span.set_attribute("http.response.status_code", response.status_code)
        return response


async def _handle(served: _Served, command: Command, label: str) -> Response:
    try:
        reply = await served.participant.handle(command)
    except StorageError as exc:
        served.commands[label, "unavailable"] += 1
        return served.unavailable(exc)
    served.commands[label, reply.status.value] += 1
    return served.answer(reply)


async def read_body(
    request: Request, limit: int, deadline: float = BODY_TIMEOUT_SECONDS
) -> bytes | None:
    """The request body, or ``None`` as soon as it is known to exceed ``limit`` bytes.

    Raises ``TimeoutError`` when it is not complete within ``deadline`` seconds, and starlette's
    ``ClientDisconnect`` when the client goes away first.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async with asyncio.timeout(deadline):
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
    return b"".join(chunks)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _parse_json(raw: bytes) -> Any:
    """Strict JSON from UTF-8 bytes; ValueError (with a short reason) for anything else."""
    if not raw.strip():
        raise ValueError("the body is empty; send the payload as a JSON object")
    try:
        text = raw.decode("utf-8")
        return json.loads(text, parse_constant=_no_constants)
    except UnicodeDecodeError:
        raise ValueError("the body is not UTF-8") from None
    except RecursionError:
        raise ValueError("the body is nested too deeply") from None
    except ValueError as exc:  # json.JSONDecodeError, and integers too long to convert
        raise ValueError(str(exc).split("\n", 1)[0]) from None


def _add_read_routes(app: FastAPI, served: _Served) -> None:
    async def probe(request: Request) -> Response:
        key: str = request.path_params["key"]
        try:
            found = await served.participant.probe(key)
        except StorageError as exc:
            return served.unavailable(exc)
        reply = None if found.reply is None else found.reply.to_json()
        return served.respond(200, {"state": found.state.value, "reply": reply})

    async def health(_request: Request) -> Response:
        try:
            await served.participant.probe(HEALTH_KEY)
        except StorageError as exc:
            log.warning("%s: health check failed: %s", served.name, exc)
            body = {"status": "unavailable", "service": served.name, "reason": "database"}
            return served.respond(UNAVAILABLE, body, {"Retry-After": RETRY_AFTER_SECONDS})
        return served.respond(200, {"status": "ok", "service": served.name})

    async def stats(_request: Request) -> Response:
        counters = getattr(served.participant, "stats", None)
        kit: dict[str, Any] = {}
        if dataclasses.is_dataclass(counters) and not isinstance(counters, type):
            kit = dataclasses.asdict(counters)
        codes = {str(code): count for code, count in sorted(served.codes.items())}
        return _Json({"service": served.name, **kit, "http_responses": codes})

    rendered: list[tuple[Callable[[], bytes], str]] = []

    async def metrics(_request: Request) -> Response:
        if not rendered:  # prometheus_client is loaded at the first scrape, not at startup
            rendered.append(_metrics_renderer(served))
        render, content_type = rendered[0]
        return Response(render(), headers={"Content-Type": content_type})

    app.add_api_route(
        "/keys/{key:path}",
        probe,
        methods=["GET"],
        summary="What became of an idempotency key (the status probe)",
        operation_id=f"{served.name}_probe",
        tags=["probes"],
        response_class=_Json,
        responses={
            200: _content("The key's state, with the stored reply when there is one", PROBE_SCHEMA),
            UNAVAILABLE: _content("The database is unavailable", UNAVAILABLE_SCHEMA),
        },
        openapi_extra={
            "parameters": [
                {
                    "name": "key",
                    "in": "path",
                    "required": True,
                    "description": "the idempotency key, percent-encoded in the path",
                    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH},
                }
            ]
        },
    )
    # Starlette's path parameters stop at a newline; a key is probed whatever it holds (an
    # unreadable one is "unknown", never a 404), so this one route matches any characters.
    probe_route = app.router.routes[-1]
    assert isinstance(probe_route, APIRoute) and probe_route.path == "/keys/{key:path}"
    probe_route.path_regex = re.compile(r"^/keys/(?P<key>[\s\S]+)$")
    app.add_api_route(
        "/health",
        health,
        methods=["GET"],
        summary="Whether the service and its database answer",
        operation_id=f"{served.name}_health",
        tags=["operations"],
        response_class=_Json,
        responses={
            200: _content("Healthy", _HEALTH_SCHEMA),
            UNAVAILABLE: _content("The database does not answer", _HEALTH_SCHEMA),
        },
    )
    app.add_api_route("/metrics", metrics, methods=["GET"], include_in_schema=False)
    app.add_api_route(
        "/stats",
        stats,
        methods=["GET"],
        summary="The service's counters since it started",
        operation_id=f"{served.name}_stats",
        tags=["operations"],
        response_class=_Json,
        responses={200: _content("Counters", {"type": "object"})},
    )


def _metrics_renderer(served: _Served) -> tuple[Callable[[], bytes], str]:
    """The app's registry (its own: two apps in one process never mix their metrics)."""
    from ordersaga.participant.metrics import http_families, kit_batch_sizes, kit_families
    from ordersaga.telemetry.exposition import CONTENT_TYPE, MetricsRegistry, group_commit_family

    registry = MetricsRegistry()

    def participant() -> dict[str, object]:
        return {served.name: served.participant}

    registry.add(lambda: kit_families(participant()))
    registry.add(lambda: http_families(served.name, served.commands, served.codes))
    registry.add(lambda: [group_commit_family(kit_batch_sizes(participant()))])
    return registry.render, CONTENT_TYPE


def _content(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_HEALTH_SCHEMA = {
    "type": "object",
    "required": ["status", "service"],
    "properties": {
        "status": {"type": "string", "enum": ["ok", "unavailable"]},
        "service": {"type": "string"},
        "reason": {"type": "string"},
    },
}

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
