"""An order as its client sees it: its URL, its JSON resource, its reasons masked and shortened
(see :mod:`ordersaga.cluster.api`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import quote

from ordersaga.ops.views import step_view
from ordersaga.orders.cards import mask_card
from ordersaga.saga.store.base import SagaRecord, SagaStatus

__all__ = ["order_view"]

DECIDED = {
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
        "outcome": DECIDED.get(record.status),
        "reason": public_reason(record.reason),
        "needs_attention": record.needs_attention,
        "created_at": _time(record.created_at),
        "updated_at": _time(record.updated_at),
        "steps": [
            {**step_view(step), "reason": public_reason(step.reason)} for step in record.steps
        ],
    }
