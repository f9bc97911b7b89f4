"""The read routes of a participant's app: the status probe ``GET /keys/{key}``, ``/health``,
``/stats`` and ``/metrics`` (see :mod:`ordersaga.participant.http`).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.routing import APIRoute

from ordersaga.db.base import Database
from ordersaga.db.deployment import describe
from ordersaga.errors import StorageError
from ordersaga.participant.openapi import PROBE_SCHEMA, UNAVAILABLE_SCHEMA, json_response
from ordersaga.participant.served import RETRY_AFTER_SECONDS, AsciiJson, Served
from ordersaga.protocol.messages import MAX_KEY_LENGTH
from ordersaga.protocol.wire import UNAVAILABLE

log = logging.getLogger(__name__)

#: The key the health check probes: a well-formed key no saga uses (its step is "health").
HEALTH_KEY = "ordersaga-health:health:action"


def add_read_routes(app: FastAPI, served: Served) -> None:
    async def probe(request: Request) -> Response:
        key: str = request.path_params["key"]
        try:
            found = await served.participant.probe(key)
        except StorageError as exc:
            return served.unavailable(exc)
        reply = None if found.reply is None else found.reply.to_json()
        return served.respond(200, {"state": found.state.value, "reply": reply})

    async def health(_request: Request) -> Response:
        body: dict[str, Any] = {"status": "ok", "service": served.name}
        try:
            await served.participant.probe(HEALTH_KEY)
            db = getattr(served.participant, "db", None)
            if isinstance(db, Database):  # its id, for the saga log (ordersaga.db.deployment)
                database = await describe(db)
                if database is not None:
                    body["database"] = database
        except StorageError as exc:
            log.warning("%s: health check failed: %s", served.name, exc)
            body = {"status": "unavailable", "service": served.name, "reason": "database"}
            return served.respond(UNAVAILABLE, body, {"Retry-After": RETRY_AFTER_SECONDS})
        return served.respond(200, body)

    async def stats(_request: Request) -> Response:
        counters = getattr(served.participant, "stats", None)
        kit: dict[str, Any] = {}
        if dataclasses.is_dataclass(counters) and not isinstance(counters, type):
            kit = dataclasses.asdict(counters)
        codes = {str(code): count for code, count in sorted(served.codes.items())}
        return AsciiJson({"service": served.name, **kit, "http_responses": codes})

    rendered: list[tuple[Callable[[], bytes], str]] = []

    async def metrics(_request: Request) -> Response:
        if not rendered:  # prometheus_client is loaded at the first scrape, not at startup
            rendered.append(_metrics_renderer(served))
        render, content_type = rendered[0]
        return Response(render(), headers={"Content-Type": content_type})

    def documented(path: str, endpoint: Any, name: str, summary: str, tag: str, **doc: Any) -> None:
        """A GET route answering JSON, documented in the OpenAPI schema as ``SERVICE_name``."""
        app.add_api_route(
            path,
            endpoint,
            methods=["GET"],
            summary=summary,
            operation_id=f"{served.name}_{name}",
            tags=[tag],
            response_class=AsciiJson,
            **doc,
        )

    documented(
        "/keys/{key:path}",
        probe,
        "probe",
        "What became of an idempotency key (the status probe)",
        "probes",
        responses={
            200: json_response(
                "The key's state, with the stored reply when there is one", PROBE_SCHEMA
            ),
            UNAVAILABLE: json_response("The database is unavailable", UNAVAILABLE_SCHEMA),
        },
        openapi_extra={"parameters": [_KEY_PARAMETER]},
    )
    # Starlette's path parameters stop at a newline; a key is probed whatever it holds (an
    # unreadable one is "unknown", never a 404), so this one route matches any characters.
    probe_route = app.router.routes[-1]
    assert isinstance(probe_route, APIRoute) and probe_route.path == "/keys/{key:path}"
    probe_route.path_regex = re.compile(r"^/keys/(?P<key>[\s\S]+)$")
    documented(
        "/health",
        health,
        "health",
        "Whether the service and its database answer",
        "operations",
        responses={
            200: json_response("Healthy", _HEALTH_SCHEMA),
            UNAVAILABLE: json_response("The database does not answer", _HEALTH_SCHEMA),
        },
    )
    app.add_api_route("/metrics", metrics, methods=["GET"], include_in_schema=False)
    documented(
        "/stats",
        stats,
        "stats",
        "The service's counters since it started",
        "operations",
        responses={200: json_response("Counters", {"type": "object"})},
    )


def _metrics_renderer(served: Served) -> tuple[Callable[[], bytes], str]:
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


_KEY_PARAMETER = {
    "name": "key",
    "in": "path",
    "required": True,
    "description": "the idempotency key, percent-encoded in the path",
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH},
}
_HEALTH_SCHEMA = {
    "type": "object",
    "required": ["status", "service"],
    "properties": {
        "status": {"type": "string", "enum": ["ok", "unavailable"]},
        "service": {"type": "string"},
        "reason": {"type": "string"},
    },
}
