"""The order API's OpenAPI shapes: its description, the responses of each route and the request
body (see :mod:`ordersaga.cluster.api`).
"""

from __future__ import annotations

from typing import Any

from ordersaga.cluster.listing import LIST_PARAMETERS
from ordersaga.cluster.orderbody import order_body_schema
from ordersaga.participant.openapi import json_response
from ordersaga.saga.store.base import SagaStatus

__all__ = [
    "BODY_DEFS",
    "DESCRIPTION",
    "GET_ORDER_ROUTE",
    "LIST_ORDERS_ROUTE",
    "MAX_WAIT_SECONDS",
    "POST_ORDER_ROUTE",
]

MAX_WAIT_SECONDS = 30.0


DESCRIPTION = """\
Order intake for ordersaga: `POST /orders` puts an order's saga in the shared saga log, where
the workers execute it; `GET /orders/{id}` tells its status, outcome and steps. Posting the same
order again is idempotent (200, same resource); the same id with other content is a 409.
"""


ERROR_SCHEMA: dict[str, Any] = {
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


_BODY_SCHEMA, BODY_DEFS = order_body_schema()
_TIME = {"type": ["string", "null"], "format": "date-time"}


ORDER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["order_id", "url", "status", "outcome", "reason", "steps"],
    "properties": {
        "order_id": {"type": "string"},
        "url": {"type": "string"},
        "status": {"enum": [s.value for s in SagaStatus]},
        "outcome": {"enum": ["confirmed", "failed", None]},
        "reason": {"type": ["string", "null"]},
        "needs_attention": {"type": "boolean"},
        "attention_reason": {
            "type": ["string", "null"],
            "description": "why the order needs a person's attention (null when it does not)",
        },
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
                    "attempt_count": {"type": "integer"},
                    "attempts": {
                        "type": "array",
                        "description": "every attempt: when sent, how long, what came of it",
                        "items": {
                            "type": "object",
                            "properties": {
                                "at": _TIME,
                                "duration_ms": {"type": "number"},
                                "result": {
                                    "enum": ["applied", "refused", "unknown", "lost", "unreachable"]
                                },
                                "error": {"type": ["string", "null"]},
                            },
                        },
                    },
                    "probes": {
                        "type": "array",
                        "description": "status probes of the step's key: when, what was found",
                        "items": {
                            "type": "object",
                            "properties": {
                                "at": _TIME,
                                "duration_ms": {"type": "number"},
                                "found": {"enum": ["applied", "refused", "unknown", "no answer"]},
                            },
                        },
                    },
                    "reason": {"type": ["string", "null"]},
                    "started_at": _TIME,
                    "ended_at": _TIME,
                },
            },
        },
    },
}


LIST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["orders", "next_cursor"],
    "properties": {
        "orders": {"type": "array", "items": {"type": "object"}},
        "next_cursor": {"type": ["string", "null"]},
    },
}


POST_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: json_response(
        "Posted before with the same content: the same order, nothing executed again", ORDER_SCHEMA
    ),
    202: json_response("Accepted: the order's saga is in the log; follow Location", ORDER_SCHEMA),
    400: json_response("No order id can be read from the body", ERROR_SCHEMA),
    409: json_response("The order id was used before with other content", ERROR_SCHEMA),
    408: json_response("The body did not arrive in time; nothing was created", ERROR_SCHEMA),
    413: json_response("The body is too large", ERROR_SCHEMA),
    422: json_response(
        "Not a valid order, for every reason listed; nothing was stored", _INVALID_SCHEMA
    ),
    503: json_response("The saga log is unavailable; nothing was created", ERROR_SCHEMA),
}


POST_BODY: dict[str, Any] = {
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


GET_PARAMETERS = [
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


def _route(operation_id: str, summary: str, **doc: Any) -> dict[str, Any]:
    """The documentation of one route of the order API (``FastAPI.add_api_route``'s keywords)."""
    return {"operation_id": operation_id, "summary": summary, "tags": ["orders"], **doc}


POST_ORDER_ROUTE = _route(
    "post_order", "Submit an order", responses=POST_RESPONSES, openapi_extra=POST_BODY
)
LIST_ORDERS_ROUTE = _route(
    "list_orders",
    "The orders, newest first, a page at a time",
    responses={
        200: json_response("A page of orders", LIST_SCHEMA),
        400: json_response("A bad query parameter", ERROR_SCHEMA),
        503: json_response("The saga log is unavailable", ERROR_SCHEMA),
    },
    openapi_extra={"parameters": LIST_PARAMETERS},
)
GET_ORDER_ROUTE = _route(
    "get_order",
    "An order's status, outcome and steps",
    responses={
        200: json_response("The order", ORDER_SCHEMA),
        400: json_response("A bad wait parameter", ERROR_SCHEMA),
        404: json_response("No such order of this client", ERROR_SCHEMA),
        503: json_response("The saga log is unavailable", ERROR_SCHEMA),
    },
    openapi_extra={"parameters": GET_PARAMETERS},
)
