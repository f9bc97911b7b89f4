"""``POST /commands`` of a participant's app: a batch of commands decided together.

The wire format is :mod:`ordersaga.protocol.batchwire`. Every command of a batch is handed to the
participant in the same event-loop iteration, so its group commit
(:class:`ordersaga.db.groupcommit.GroupCommitter`) decides them in one transaction, and each gets
exactly the reply ``POST /commands/{action}`` would have given it: validation, idempotency and
conflicts stay per command. A malformed batch is answered ``400``/``413`` before anything is
applied; a malformed item gets its own ``400`` reply; bad input never causes a 5xx.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import FastAPI, Request, Response
from starlette.routing import Route

from ordersaga.errors import StorageError
from ordersaga.participant.openapi import (
    REPLY_SCHEMA,
    REQUEST_TIMEOUT,
    SERVICE_ACTIONS,
    json_response,
)
from ordersaga.participant.served import AsciiJson, Served
from ordersaga.protocol.batchwire import (
    BATCH_PATH,
    MAX_BATCH_COMMANDS,
    parse_batch,
    reply_item,
    unavailable_item,
)
from ordersaga.protocol.messages import Command, Reply
from ordersaga.protocol.wire import TOO_LARGE, UNAVAILABLE

__all__ = ["add_batch_route", "answer_batch"]

log = logging.getLogger(__name__)


def add_batch_route(app: FastAPI, served: Served, max_body_bytes: int) -> None:
    """Serve ``POST /commands`` (a plain Starlette route) and document it in the OpenAPI."""

    async def run(request: Request) -> Response:
        return await answer_batch(served, request, max_body_bytes)

    app.add_api_route(
        BATCH_PATH,
        run,
        methods=["POST"],
        summary="Run a batch of commands, decided together; one reply per command, in order",
        operation_id=f"{served.name}_batch",
        tags=["commands"],
        response_class=AsciiJson,
        responses=_responses(),
        openapi_extra={"requestBody": _request_body(served.name)},
    )
    app.router.routes[:0] = [Route(BATCH_PATH, run, methods=["POST"])]


async def answer_batch(served: Served, request: Request, limit: int) -> Response:
    """The response to ``POST /commands``."""
    data, refused = await served.read_json(request, limit, "batch")
    if refused is not None:
        return refused
    try:
        items = parse_batch(served.name, data)
    except OverflowError as exc:
        return served.invalid(str(exc), TOO_LARGE)
    except ValueError as exc:
        return served.invalid(f"malformed batch: {exc}")
    answers = await asyncio.gather(
        *(
            _invalid(served, item) if isinstance(item, str) else _handle(served, *item)
            for item in items
        )
    )
    return served.respond(200, {"replies": answers})


async def _invalid(served: Served, reason: str) -> dict[str, Any]:
    served.commands["other", "invalid"] += 1
    return reply_item(Reply.invalid(reason))


async def _handle(served: Served, command: Command, traceparent: str | None) -> dict[str, Any]:
    label = command.action if command.action in served.actions else "other"
    if served.tracing is None:
        return await _decide(served, command, label)
    with served.tracing.span(
        f"{served.name} {label}",
        traceparent=traceparent,
        kind="server",
        attributes={"ordersaga.service": served.name, "ordersaga.key": command.key},
    ) as span:
        answer = await _decide(served, command, label)
        span.set_attribute("http.response.status_code", answer["code"])
        return answer


async def _decide(served: Served, command: Command, label: str) -> dict[str, Any]:
    try:
        reply = await served.participant.handle(command)
    except StorageError as exc:
        served.commands[label, "unavailable"] += 1
        log.warning("%s: database unavailable: %s", served.name, exc)
        return unavailable_item(f"{served.name}: database unavailable")
    served.commands[label, reply.status.value] += 1
    return reply_item(reply)


def _request_body(service: str) -> dict[str, Any]:
    actions = [doc.name for doc in SERVICE_ACTIONS.get(service, ())]
    item = {
        "type": "object",
        "required": ["action", "key", "payload"],
        "properties": {
            "action": {"type": "string", "enum": actions} if actions else {"type": "string"},
            "key": {
                "type": "string",
                "description": "The command's idempotency key, `<saga id>:<step>:<phase>`",
            },
            "payload": {"type": "object", "description": "The action's payload"},
            "sent_at": {"type": "number", "description": "As the Sent-At header"},
            "traceparent": {"type": "string", "description": "W3C traceparent of the step"},
        },
    }
    schema = {
        "type": "object",
        "required": ["commands"],
        "properties": {
            "commands": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_BATCH_COMMANDS,
                "items": item,
            }
        },
    }
    example = next(iter(SERVICE_ACTIONS.get(service, ())), None)
    content: dict[str, Any] = {"schema": schema}
    if example is not None:
        content["example"] = {
            "commands": [
                {
                    "action": example.name,
                    "key": f"order-1:{example.name}:{example.phase.value}",
                    "payload": example.example,
                }
            ]
        }
    return {
        "required": True,
        "description": (
            "Commands for this service, each with its own idempotency key: each is applied at"
            " most once and gets the reply its own `POST /commands/{action}` would get."
        ),
        "content": {"application/json": content},
    }


def _responses() -> dict[int | str, Any]:
    reply = {
        **REPLY_SCHEMA,
        "required": ["code", "status", "reason"],
        "properties": {
            **REPLY_SCHEMA["properties"],
            "code": {"type": "integer", "description": "The command's own status code"},
            "status": {"type": "string"},
        },
    }
    replies = {
        "type": "object",
        "required": ["replies"],
        "properties": {"replies": {"type": "array", "items": reply}},
    }
    invalid = {**REPLY_SCHEMA}
    return {
        200: json_response(
            "One reply per command, in order; each `code` is what `POST /commands/{action}`"
            f" answers (`{UNAVAILABLE}`: the database failed that command, nothing applied)",
            replies,
        ),
        400: json_response("Malformed batch (not JSON, no commands); nothing applied", invalid),
        TOO_LARGE: json_response(
            f"Body too large or more than {MAX_BATCH_COMMANDS} commands; nothing applied",
            invalid,
        ),
        REQUEST_TIMEOUT: json_response("The body did not arrive in time; nothing applied", invalid),
    }
