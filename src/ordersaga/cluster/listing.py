"""``GET /orders`` of the order API: the orders, newest first, a page at a time.

Query parameters: ``status`` (a saga status), ``needs_attention`` (``true``/``false``),
``limit`` (1-500, default 50) and ``cursor`` (the ``next_cursor`` of the previous page: keyset
pagination, so a deep page costs what the first one does and new orders never shift pages).
Each order is the row ``ordersaga sagas list --json`` prints, with its ``url``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from ordersaga.ops.views import list_row
from ordersaga.saga.store.base import SagaStatus, SagaStore
from ordersaga.saga.store.operator import SagaFilter

__all__ = ["DEFAULT_LIMIT", "LIST_PARAMETERS", "MAX_LIMIT", "ListError", "list_orders"]

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
_BOOLEANS = {"true": True, "1": True, "false": False, "0": False}


class ListError(ValueError):
    """A bad query parameter (a 400)."""


def _filter(params: Mapping[str, str], prefix: str | None = None) -> SagaFilter:
    status = params.get("status")
    if status is not None and status not in {s.value for s in SagaStatus}:
        raise ListError(f"status must be one of {', '.join(s.value for s in SagaStatus)}")
    attention = params.get("needs_attention")
    if attention is not None and attention.lower() not in _BOOLEANS:
        raise ListError("needs_attention must be true or false")
    text = params.get("limit", str(DEFAULT_LIMIT))
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise ListError(f"limit must be an integer within [1, {MAX_LIMIT}]")
    cursor = params.get("cursor") or None
    if cursor is not None and (not cursor.isdigit() or len(cursor) > 19):
        raise ListError("cursor must be the next_cursor of a previous page")
    return SagaFilter(
        status=None if status is None else SagaStatus(status),
        needs_attention=None if attention is None else _BOOLEANS[attention.lower()],
        limit=int(text),
        cursor=cursor,
        id_prefix=prefix,
    )


async def list_orders(
    store: SagaStore, params: Mapping[str, str], prefix: str = ""
) -> dict[str, Any]:
    """The page ``params`` ask for, of the sagas whose id starts with ``prefix`` (a client's
    orders: each shown by its order id, the prefix taken off); ListError for a bad parameter."""
    page = await store.list_sagas(_filter(params, prefix or None))
    orders = []
    for entry in page.entries:
        order_id = entry.record.saga_id[len(prefix) :]
        url = "/orders/" + quote(order_id, safe="", errors="surrogatepass")
        orders.append({**list_row(entry), "order_id": order_id, "url": url})
    return {"orders": orders, "next_cursor": page.next_cursor}


LIST_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": "status",
        "in": "query",
        "required": False,
        "description": "only orders whose saga is in this status",
        "schema": {"enum": [s.value for s in SagaStatus]},
    },
    {
        "name": "needs_attention",
        "in": "query",
        "required": False,
        "description": "only orders flagged (true) or not flagged (false) for attention",
        "schema": {"type": "boolean"},
    },
    {
        "name": "limit",
        "in": "query",
        "required": False,
        "description": f"orders per page (default {DEFAULT_LIMIT})",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
    },
    {
        "name": "cursor",
        "in": "query",
        "required": False,
        "description": "the next_cursor of the previous page",
        "schema": {"type": "string", "pattern": "^[0-9]{1,19}$"},
    },
]
