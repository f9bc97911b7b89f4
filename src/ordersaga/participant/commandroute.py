"""``POST /commands/{action}`` of a participant's app: the Idempotency-Key header and the JSON
body framed into a :class:`~ordersaga.protocol.messages.Command`, its reply answered with the
status code of :mod:`ordersaga.protocol.wire` (see :mod:`ordersaga.participant.http`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, cast

from fastapi import FastAPI, Request, Response
from starlette.routing import Route

from ordersaga.errors import StorageError
from ordersaga.participant.openapi import (
    SERVICE_ACTIONS,
    ActionDoc,
    command_responses,
    key_parameter,
)
from ordersaga.participant.served import AsciiJson, Served
from ordersaga.protocol.messages import Command
from ordersaga.protocol.wire import IDEMPOTENCY_KEY, SENT_AT, decode_key, decode_sent_at
from ordersaga.telemetry.tracing import TRACEPARENT

log = logging.getLogger(__name__)


def add_command_routes(app: FastAPI, served: Served, max_body_bytes: int) -> None:
    def endpoint(action: str | None) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            name = action if action is not None else request.path_params["action"]
            return await answer_command(served, request, name, max_body_bytes)

        return run

    for doc in SERVICE_ACTIONS.get(served.name, ()):
        app.add_api_route(
            f"/commands/{doc.name}",
            endpoint(doc.name),
            methods=["POST"],
            summary=doc.summary,
            operation_id=f"{served.name}_{doc.name}",
            tags=["commands"],
            response_class=AsciiJson,
            responses=command_responses(doc),
            openapi_extra=_command_openapi(doc),
        )
    # Any other action: the participant answers it (``invalid``: unknown action), like in process.
    # The routes above document the commands in the OpenAPI schema; the requests themselves are
    # served by plain Starlette routes put in front of them, which skip FastAPI's per-request
    # dependency solving (the endpoint reads the request itself anyway): a lighter hot path.
    plain = [
        Route(f"/commands/{doc.name}", endpoint(doc.name), methods=["POST"])
        for doc in SERVICE_ACTIONS.get(served.name, ())
    ]
    plain.append(Route("/commands/{action}", endpoint(None), methods=["POST"]))
    app.router.routes[:0] = plain


def _command_openapi(doc: ActionDoc) -> dict[str, Any]:
    return {
        "parameters": [key_parameter(doc.phase)],
        "requestBody": {
            "required": True,
            "description": f"The {doc.name} payload (a {doc.phase.value} command).",
            "content": {"application/json": {"schema": doc.schema, "example": doc.example}},
        },
    }


async def answer_command(served: Served, request: Request, action: str, limit: int) -> Response:
    """The response to ``POST /commands/{action}`` (``action`` from the path)."""
    header = request.headers.get(IDEMPOTENCY_KEY)
    if header is None:
        return served.invalid(f"missing {IDEMPOTENCY_KEY} header")
    try:
        key = decode_key(header)
    except ValueError as exc:
        return served.invalid(str(exc))
    payload, refused = await served.read_json(request, limit, "body")
    if refused is not None:
        return refused
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


async def _handle(served: Served, command: Command, label: str) -> Response:
    try:
        reply = await served.participant.handle(command)
    except StorageError as exc:
        served.commands[label, "unavailable"] += 1
        return served.unavailable(exc)
    served.commands[label, reply.status.value] += 1
    return served.answer(reply)
