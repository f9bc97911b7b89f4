"""The order intake API (`ordersaga serve api`): how a shop's checkout hands orders to ordersaga.

:func:`create_api` builds a FastAPI app on the shared PostgreSQL saga log (no globals). An
order becomes a saga in the log, and the workers (``ordersaga worker``) execute it::

    POST /orders             an order (CONTRACT section 2: a JSON object, or one text-form
                             line as text/plain) -> 202 Accepted + Location: /orders/{id}
    GET  /orders             the orders, newest first: ``?status=&needs_attention=&limit=
                             &cursor=`` (see :mod:`ordersaga.cluster.listing`)
    GET  /orders/{id}        the order's whole timeline (``ordersaga sagas show --json``):
                             status, outcome, reason, each step with its attempts and timings,
                             operator actions; ``?wait=S`` waits up to S seconds for the outcome
    GET  /health             200 when the saga log answers, else 503
    GET  /stats              sagas per status
    GET  /metrics            Prometheus metrics: submissions by result, sagas per status
    GET  /openapi.json       the OpenAPI schema (and /docs, its browsable form, served locally)
    GET  /ui/                the dashboard (:mod:`ordersaga.dashboard`) on the same saga log;
                             its operator actions need the operator token given to the API

Clients and ownership. Every route but ``/health``, ``/metrics`` and the documentation needs an
API key (``Authorization: Bearer <key>``, :mod:`ordersaga.cluster.apikeys`), else ``401``. An
order belongs to the client that posted it: its saga id is ``<client>,<order id>``, so order ids
are per client (the same id from two clients is two orders), and a client reads only its own
orders (another's answers ``404``, like one that does not exist). Refusal reasons that would tell
a client about data beyond its order (another order's use of a credit limit) are shortened.

Submission follows the rules of ``ordersaga run``, except that an invalid order never exists: a
body that is not a valid order answers ``422`` with every reason (:mod:`.orderbody`) and nothing
is stored, so the corrected order is accepted under the same id; a body without a readable order
id is refused with 400. Posting an order again is idempotent: the same id with the same content
answers ``200`` with the same resource (nothing is executed again), the same id with other
content ``409 Conflict`` (the first order untouched). A card number is sealed in the saga log
(:mod:`ordersaga.orders.vault`) and never appears in an answer.

``status`` is the saga's (``running``, ``compensating``, ``confirming``, ``confirmed``,
``failed``); ``outcome`` is the decision once it is made: ``confirmed`` from ``confirming`` on,
``failed`` from ``compensating`` on (neither can change any more), ``null`` while running.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from ordersaga import __version__
from ordersaga.cluster import apikeys
from ordersaga.cluster.listing import LIST_PARAMETERS, ListError, list_orders
from ordersaga.cluster.orderbody import body_reasons, order_body_schema
from ordersaga.cluster.submit import Submitter
from ordersaga.dashboard import DashboardSettings, SharedLog, create_dashboard
from ordersaga.errors import ConfigError, StorageError
from ordersaga.ops.views import saga_view, step_view
from ordersaga.orders.cards import mask_card
from ordersaga.orders.intake import saga_request
from ordersaga.orders.order_saga import ORDER_SAGA_NAME
from ordersaga.orders.parse import MAX_LINE_BYTES, Parsed, Rejected, Skip, Unreadable, parse_line
from ordersaga.orders.rules import is_valid_order_id
from ordersaga.orders.vault import CardVault
from ordersaga.participant.auth import PUBLIC_PREFIXES
from ordersaga.participant.docs import local_docs
from ordersaga.participant.http import BODY_TIMEOUT_SECONDS, read_body, require_token
from ordersaga.saga.spans import TRACE_KEY
from ordersaga.saga.store import PostgresSagaStore
from ordersaga.saga.store.base import SagaRecord, SagaStatus
from ordersaga.telemetry.tracing import TRACEPARENT, Tracing

log = logging.getLogger(__name__)

__all__ = ["MAX_WAIT_SECONDS", "StoreOpener", "create_api", "order_view"]

#: An async function opening the saga log (the app opens it at startup, closes it at exit).
StoreOpener = Callable[[], Awaitable[PostgresSagaStore]]
MAX_WAIT_SECONDS = 30.0
_MAX_BODY = MAX_LINE_BYTES + 2
_DESCRIPTION = """\
Order intake for ordersaga: `POST /orders` puts an order's saga in the shared saga log, where
the workers execute it; `GET /orders/{id}` tells its status, outcome and steps. Posting the same
order again is idempotent (200, same resource); the same id with other content is a 409.
"""
_DECIDED = {
    SagaStatus.CONFIRMING: "confirmed",
    SagaStatus.CONFIRMED: "confirmed",
    SagaStatus.COMPENSATING: "failed",
    SagaStatus.FAILED: "failed",
}


def order_url(order_id: str) -> str:
    return "/orders/" + quote(order_id, safe="", errors="surrogatepass")


def _time(epoch: float) -> str | None:
    if not epoch:
        return None
    stamp = dt.datetime.fromtimestamp(epoch, tz=dt.UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def public_reason(reason: str | None) -> str | None:
    """A reason as a client may see it: masked, and without other orders' use of a limit."""
    if reason is None:
        return None
    head, found, _rest = reason.partition(": limit ")
    return mask_card(head if found and "credit limit exceeded" in head else reason)


def order_view(record: SagaRecord, order_id: str | None = None) -> dict[str, Any]:
    """The JSON resource of one order (``order_id``: as its client knows it)."""
    order_id = record.saga_id if order_id is None else order_id
    return {
        "order_id": order_id,
        "url": order_url(order_id),
        "status": record.status.value,
        "outcome": _DECIDED.get(record.status),
        "reason": public_reason(record.reason),
        "needs_attention": record.needs_attention,
        "created_at": _time(record.created_at),
        "updated_at": _time(record.updated_at),
        "steps": [
            {**step_view(step), "reason": public_reason(step.reason)} for step in record.steps
        ],
    }


def _error(code: int, message: str, **extra: Any) -> Response:
    return JSONResponse({"error": message, **extra}, status_code=code)


class _State:
    """The app's saga log and submitter (per app, never global)."""

    def __init__(self) -> None:
        self.store: PostgresSagaStore | None = None
        self.submitter: Submitter | None = None
        self.orders: Counter[str] = Counter()  # POST /orders by result, for /metrics
        self.statuses: dict[SagaStatus, int] | None = None  # read from the log when scraped

    def ready(self) -> tuple[PostgresSagaStore, Submitter]:
        if self.store is None or self.submitter is None:
            raise RuntimeError("the order API has not started")
        return self.store, self.submitter


def create_api(
    store: PostgresSagaStore | StoreOpener,
    clients: Mapping[str, str],
    data_key: bytes,
    *,
    tracing: Tracing | None = None,
    ui: DashboardSettings | None = None,
    log_name: str = "the order API's saga log",
) -> FastAPI:
    """The order API on ``store`` (an open saga log the caller closes, or an opener).

    ``clients`` maps each API key to its client's name; ``data_key`` seals card numbers (the
    workers' key). With ``tracing``, ``POST /orders`` runs in a server span (continuing the
    client's ``traceparent``) that the order's saga keeps in the log: its whole life joins that
    trace.
    ``ui`` configures the dashboard at ``/ui`` (its operator token; none: read-only), which
    shows ``log_name`` as the log it reads.
    """
    if not clients:
        raise ConfigError("the order API needs at least one API key")
    vault = CardVault(data_key)
    state = _State()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        opened = store if isinstance(store, PostgresSagaStore) else await store()
        state.store = opened
        state.submitter = await Submitter.open(opened)
        try:
            yield
        finally:
            await state.submitter.close()
            state.store = state.submitter = None
            if opened is not store:
                await opened.close()

    app = FastAPI(
        title="ordersaga order API",
        version=__version__,
        description=_DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    local_docs(app)
    app.state.orders = state
    # The dashboard reads (and repairs through) the API's own open log. It has its own operator
    # token and sessions: whatever guards the order routes must leave /ui to it.
    dashboard = create_dashboard(
        SharedLog(lambda: state.ready()[0], log_name), ui or DashboardSettings()
    )
    app.mount("/ui", dashboard, name="ui")

    async def post_order(request: Request) -> Response:
        if tracing is None:
            return await _post_order(request)
        with tracing.span(
            "POST /orders", traceparent=request.headers.get(TRACEPARENT), kind="server"
        ) as span:
            response = await _post_order(request, tracing.current_traceparent())
            span.set_attribute("http.response.status_code", response.status_code)
            return response

    async def _post_order(request: Request, trace: str | None = None) -> Response:
        _, submitter = state.ready()
        client: str = request.state.client
        try:
            raw = await read_body(request, _MAX_BODY)
        except ClientDisconnect:
            log.info("a client went away before sending the whole order")
            return _error(400, "the client went away before sending the whole body")
        except TimeoutError:
            log.info("an order's body did not arrive within %g s", BODY_TIMEOUT_SECONDS)
            return _error(408, "the body did not arrive in time")
        if raw is None:
            state.orders["too_large"] += 1
            return _error(413, f"the body is larger than {_MAX_BODY} bytes")
        parsed = _parse(raw, request.headers.get("content-type", ""))
        if isinstance(parsed, str):
            state.orders["unreadable"] += 1
            return _error(400, parsed)
        if isinstance(parsed, list):
            state.orders["rejected"] += 1
            return _error(422, "not a valid order: nothing was stored", reasons=parsed)
        saga = saga_request(vault, parsed)
        saga_id = apikeys.saga_id(client, saga.order_id)
        try:
            # The trace the request belongs to is kept beside the order (not in the
            # fingerprint): the saga's spans continue it.
            data = saga.input if trace is None else {**saga.input, TRACE_KEY: trace}
            record, created = await submitter.submit(
                ORDER_SAGA_NAME, saga_id, data, saga.fingerprint
            )
        except StorageError as exc:
            state.orders["unavailable"] += 1
            return _unavailable(exc)
        url = order_url(saga.order_id)
        if not created and record.fingerprint != saga.fingerprint:
            state.orders["conflict"] += 1
            return _error(409, "this order id was used before with other content", order=url)
        state.orders["accepted" if created else "replayed"] += 1
        return JSONResponse(
            order_view(record, saga.order_id),
            status_code=202 if created else 200,
            headers={"Location": url},
        )

    async def get_order(request: Request) -> Response:
        store, submitter = state.ready()
        client: str = request.state.client
        order_id: str = request.path_params["order_id"]
        try:
            wait = float(request.query_params.get("wait", "0"))
        except ValueError:
            return _error(400, "wait must be a number of seconds")
        if not 0 <= wait <= MAX_WAIT_SECONDS:
            return _error(400, f"wait must be within [0, {MAX_WAIT_SECONDS:g}] seconds")
        if not is_valid_order_id(order_id):  # NUL, surrogates, ...: no order has such an id
            return _error(404, "no such order")
        saga_id = apikeys.saga_id(client, order_id)
        try:
            record = await store.load(saga_id)
            if record is not None and wait and record.status not in _DECIDED:
                with contextlib.suppress(TimeoutError):
                    record = await asyncio.wait_for(submitter.wait(saga_id), wait)
                if record.status not in _DECIDED:  # decided but not finished: read it again
                    record = await store.load(saga_id) or record
        except StorageError as exc:
            return _unavailable(exc)
        if record is None:
            return _error(404, "no such order", order_id=order_id)
        try:
            entry = await store.inspect(saga_id)
        except StorageError as exc:
            return _unavailable(exc)
        timeline = {} if entry is None else saga_view(entry)
        # The client's own view wins: its order id, masked reasons, nothing about other orders.
        return JSONResponse({**timeline, **order_view(record, order_id)})

    async def get_orders(request: Request) -> Response:
        store, _ = state.ready()
        client: str = request.state.client
        try:
            page = await list_orders(store, request.query_params, apikeys.saga_id(client, ""))
        except ListError as exc:
            return _error(400, str(exc))
        except StorageError as exc:
            return _unavailable(exc)
        for row in page["orders"]:
            row["reason"] = public_reason(row["reason"])
            row.pop("worker", None)  # the topology is the operator's business
        return JSONResponse(page)

    async def health(_request: Request) -> Response:
        store, _ = state.ready()
        try:
            await store.database.fetchone("SELECT 1 AS ok")
        except StorageError:
            return JSONResponse(
                {"status": "unavailable", "service": "api", "reason": "saga log"},
                status_code=503,
            )
        return JSONResponse({"status": "ok", "service": "api"})

    async def stats(_request: Request) -> Response:
        store, _ = state.ready()
        try:
            counts = await store.count_by_status()
        except StorageError as exc:
            return _unavailable(exc)
        return JSONResponse({"service": "api", "sagas": {k.value: v for k, v in counts.items()}})

    registry: list[Any] = []  # prometheus_client is loaded at the first scrape

    async def metrics(_request: Request) -> Response:
        from ordersaga.cluster.metrics import api_families
        from ordersaga.telemetry.exposition import CONTENT_TYPE, MetricsRegistry

        store, _ = state.ready()
        try:
            statuses: dict[SagaStatus, int] | None = await store.count_by_status()
        except StorageError:
            statuses = None  # the families from the log are left out of this scrape
        if not registry:
            registry.append(MetricsRegistry())
            registry[0].add(lambda: api_families(state.orders, state.statuses))
        state.statuses = statuses
        return Response(registry[0].render(), headers={"Content-Type": CONTENT_TYPE})

    app.add_api_route(
        "/orders",
        post_order,
        methods=["POST"],
        summary="Submit an order",
        operation_id="post_order",
        tags=["orders"],
        responses=_POST_RESPONSES,
        openapi_extra=_POST_BODY,
    )
    app.add_api_route(
        "/orders",
        get_orders,
        methods=["GET"],
        summary="The orders, newest first, a page at a time",
        operation_id="list_orders",
        tags=["orders"],
        responses={
            200: _json("A page of orders", _LIST_SCHEMA),
            400: _json("A bad query parameter", _ERROR_SCHEMA),
            503: _json("The saga log is unavailable", _ERROR_SCHEMA),
        },
        openapi_extra={"parameters": LIST_PARAMETERS},
    )
    app.add_api_route(
        "/orders/{order_id:path}",
        get_order,
        methods=["GET"],
        summary="An order's status, outcome and steps",
        operation_id="get_order",
        tags=["orders"],
        responses={
            200: _json("The order", _ORDER_SCHEMA),
            400: _json("A bad wait parameter", _ERROR_SCHEMA),
            404: _json("No such order of this client", _ERROR_SCHEMA),
            503: _json("The saga log is unavailable", _ERROR_SCHEMA),
        },
        openapi_extra={"parameters": _GET_PARAMETERS},
    )
    app.add_api_route("/health", health, methods=["GET"], tags=["operations"])
    app.add_api_route("/stats", stats, methods=["GET"], tags=["operations"])
    app.add_api_route("/metrics", metrics, methods=["GET"], include_in_schema=False)
    # The dashboard at /ui has its own operator token and sessions: the API keys leave it alone.
    require_token(
        app,
        list(clients.items()),
        "An API key (a line of ORDERSAGA_API_KEYS)",
        public_prefixes=(*PUBLIC_PREFIXES, "/ui"),  # the mount: /ui and /ui/...
    )
    plain_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = plain_openapi()
            schema.setdefault("components", {}).setdefault("schemas", {}).update(_BODY_DEFS)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _unavailable(exc: StorageError) -> Response:
    log.warning("the saga log is unavailable: %s", exc)
    return _error(503, "the saga log is unavailable; nothing was created")


def _parse(raw: bytes, content_type: str) -> Parsed | list[str] | str:
    """The order in the body; or every reason it is not a valid one (a 422); or why there is
    no order at all (a 400)."""
    body = raw.strip()
    reasons: list[str] = []
    if content_type.split(";", 1)[0].strip().lower() == "application/json":
        if not body.startswith(b"{"):
            return "the body must be one order as a JSON object"
        line = body.replace(b"\r", b" ").replace(b"\n", b" ")  # a pretty-printed object
        with contextlib.suppress(ValueError, RecursionError):
            reasons = body_reasons(json.loads(body))
    else:
        if b"\n" in body or b"\r" in body:
            return "one order line per request"
        line = body
    parsed = parse_line(line)
    if isinstance(parsed, Skip):
        return "the body holds no order"
    if isinstance(parsed, Unreadable):
        return f"no order id can be read: {parsed.reason}"
    if isinstance(parsed, Rejected):
        return reasons or [parsed.reason]
    return reasons or parsed


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}},
}
_INVALID_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error", "reasons"],
    "properties": {
        "error": {"type": "string"},
        "reasons": {"type": "array", "items": {"type": "string"}},
    },
}
_BODY_SCHEMA, _BODY_DEFS = order_body_schema()
_TIME = {"type": ["string", "null"], "format": "date-time"}
_ORDER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["order_id", "url", "status", "outcome", "reason", "steps"],
    "properties": {
        "order_id": {"type": "string"},
        "url": {"type": "string"},
        "status": {"enum": [s.value for s in SagaStatus]},
        "outcome": {"enum": ["confirmed", "failed", None]},
        "reason": {"type": ["string", "null"]},
        "needs_attention": {"type": "boolean"},
        "created_at": _TIME,
        "updated_at": _TIME,
        "step": {"type": ["string", "null"], "description": "the step that failed the order"},
        "cause": {"enum": ["business", "technical", "input", "operator", None]},
        "worker": {"type": ["string", "null"], "description": "the worker holding it, or last"},
        "actions": {
            "type": "array",
            "description": "what operators did (ordersaga sagas retry|resolve|cancel)",
            "items": {"type": "object"},
        },
        "steps": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "step": {"type": "string"},
                    "phase": {"enum": ["action", "compensate", "confirm"]},
                    "status": {"enum": ["succeeded", "refused", "unknown", "undelivered"]},
                    "attempts": {"type": "integer"},
                    "reason": {"type": ["string", "null"]},
                    "started_at": _TIME,
                    "ended_at": _TIME,
                },
            },
        },
    },
}
_LIST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["orders", "next_cursor"],
    "properties": {
        "orders": {"type": "array", "items": {"type": "object"}},
        "next_cursor": {"type": ["string", "null"]},
    },
}
_POST_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: _json(
        "Posted before with the same content: the same order, nothing executed again", _ORDER_SCHEMA
    ),
    202: _json("Accepted: the order's saga is in the log; follow Location", _ORDER_SCHEMA),
    400: _json("No order id can be read from the body", _ERROR_SCHEMA),
    409: _json("The order id was used before with other content", _ERROR_SCHEMA),
    408: _json("The body did not arrive in time; nothing was created", _ERROR_SCHEMA),
    413: _json("The body is too large", _ERROR_SCHEMA),
    422: _json("Not a valid order, for every reason listed; nothing was stored", _INVALID_SCHEMA),
    503: _json("The saga log is unavailable; nothing was created", _ERROR_SCHEMA),
}
_POST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "One order: the JSON form, or one text-form line as text/plain.",
        "content": {
            "application/json": {
                "schema": _BODY_SCHEMA,
                "example": {
                    "order_id": "123",
                    "user_id": 456,
                    "items": [{"item_id": "A", "quantity": 2}],
                    "payment_info": {"method": "PayPal"},
                    "shipping_address": {
                        "street": "1 Main St",
                        "city": "Springfield",
                        "country": "US",
                    },
                },
            },
            "text/plain": {
                "schema": {"type": "string"},
                "example": "Order 123, User 456, Items: [{A, 2}], Payment: PayPal,"
                " Address: 1 Main St, Springfield, US",
            },
        },
    }
}
_GET_PARAMETERS = [
    {
        "name": "order_id",
        "in": "path",
        "required": True,
        "description": "the order id, percent-encoded",
        "schema": {"type": "string"},
    },
    {
        "name": "wait",
        "in": "query",
        "required": False,
        "description": f"seconds (at most {MAX_WAIT_SECONDS:g}) to wait for the outcome",
        "schema": {"type": "number", "minimum": 0, "maximum": MAX_WAIT_SECONDS},
    },
]
