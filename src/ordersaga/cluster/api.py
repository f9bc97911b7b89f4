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
    GET  /ui/                the dashboard (:mod:`ordersaga.dashboard`) on the same saga log,
                             for the operator only: every read and action needs the operator
                             token given to the API (a sign-in form, or a bearer header); not
                             served without one (unless ``serve api --insecure``: read-only)

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
import dataclasses
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from ordersaga import __version__
from ordersaga.cluster import apikeys
from ordersaga.cluster.apischema import (
    BODY_DEFS,
    DESCRIPTION,
    GET_ORDER_ROUTE,
    LIST_ORDERS_ROUTE,
    MAX_WAIT_SECONDS,
    POST_ORDER_ROUTE,
)
from ordersaga.cluster.listing import ListError, list_orders
from ordersaga.cluster.orderbody import parse_body
from ordersaga.cluster.orderview import DECIDED, order_url, order_view, public_reason
from ordersaga.cluster.submit import Submitter
from ordersaga.dashboard import DashboardSettings, SharedLog, create_dashboard
from ordersaga.errors import ConfigError, StorageError
from ordersaga.ops.views import saga_view
from ordersaga.orders.intake import saga_request
from ordersaga.orders.order_saga import ORDER_SAGA_NAME
from ordersaga.orders.parse import MAX_LINE_BYTES
from ordersaga.orders.rules import is_valid_order_id
from ordersaga.orders.vault import CardVault
from ordersaga.participant.auth import PUBLIC_PREFIXES
from ordersaga.participant.body import BODY_TIMEOUT_SECONDS, read_body
from ordersaga.participant.docs import local_docs
from ordersaga.participant.http import require_token
from ordersaga.saga.spans import TRACE_KEY
from ordersaga.saga.store import PostgresSagaStore
from ordersaga.saga.store.base import SagaStatus
from ordersaga.telemetry.tracing import TRACEPARENT, Tracing

__all__ = ["StoreOpener", "create_api"]

log = logging.getLogger(__name__)


#: An async function opening the saga log (the app opens it at startup, closes it at exit).
StoreOpener = Callable[[], Awaitable[PostgresSagaStore]]


_MAX_BODY = MAX_LINE_BYTES + 2


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


def _dashboard(ui: DashboardSettings | None, log: SharedLog) -> ASGIApp:
    """The app at ``/ui``: the dashboard (private when it has a token), or a clear 404."""
    if ui is None:

        async def off(scope: Scope, receive: Receive, send: Send) -> None:
            message = (
                "the dashboard at /ui is off: start the API with an operator token"
                " (ORDERSAGA_OPERATOR_TOKEN or --token-file)"
            )
            if scope["type"] == "http":
                await JSONResponse({"error": message}, status_code=404)(scope, receive, send)

        return off
    if ui.token is not None and not ui.private:
        ui = dataclasses.replace(ui, private=True)  # the API's port is not the operator's own
    return create_dashboard(log, ui)


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
    ``ui`` configures the dashboard at ``/ui``, which shows ``log_name`` as the log it reads:
    with an operator token it is private (every read needs the operator signed in); settings
    without a token serve it read-only to anyone (``serve api --insecure``); None: not served.
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
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    local_docs(app)
    app.state.orders = state
    # The dashboard reads (and repairs through) the API's own open log. It has its own operator
    # token and sessions: whatever guards the order routes must leave /ui to it.
    app.mount("/ui", _dashboard(ui, SharedLog(lambda: state.ready()[0], log_name)), name="ui")

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
        parsed = parse_body(raw, request.headers.get("content-type", ""))
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
            if record is not None and wait and record.status not in DECIDED:
                with contextlib.suppress(TimeoutError):
                    record = await asyncio.wait_for(submitter.wait(saga_id), wait)
                if record.status not in DECIDED:  # decided but not finished: read it again
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

    app.add_api_route("/orders", post_order, methods=["POST"], **POST_ORDER_ROUTE)
    app.add_api_route("/orders", get_orders, methods=["GET"], **LIST_ORDERS_ROUTE)
    app.add_api_route("/orders/{order_id:path}", get_order, methods=["GET"], **GET_ORDER_ROUTE)
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
            schema.setdefault("components", {}).setdefault("schemas", {}).update(BODY_DEFS)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _unavailable(exc: StorageError) -> Response:
    log.warning("the saga log is unavailable: %s", exc)
    return _error(503, "the saga log is unavailable; nothing was created")
