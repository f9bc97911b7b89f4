"""How an order request becomes a saga: its input, its keyed fingerprint, or its failure.

The one place this is decided, shared by ``ordersaga run``, ``run --submit-only`` and the order
API, so an order posted to the API and the same line in a stream are one order. The input is the
order's canonical JSON form with its card fields sealed (:mod:`ordersaga.orders.vault`); the
fingerprint is keyed, so neither the log nor its fingerprints hold anything a card number could
be recovered from. An invalid order is recorded failed, its reason already masked by the parser.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ordersaga.orders.parse import Parsed, Rejected
from ordersaga.orders.vault import CardVault
from ordersaga.protocol.messages import fingerprint
from ordersaga.slots import slot_setter

__all__ = ["SagaRequest", "saga_request"]


@dataclass(frozen=True, slots=True, init=False)
class SagaRequest:
    """What to create in the saga log for one order request."""

    order_id: str
    input: dict[str, Any]
    fingerprint: str
    failed: str | None  # the reason of an invalid order (created already failed), else None

    def __init__(
        self, order_id: str, input: dict[str, Any], fingerprint: str, failed: str | None
    ) -> None:
        # Each field through its slot: one request per order (see ordersaga.slots).
        _set_order_id(self, order_id)
        _set_input(self, input)
        _set_fingerprint(self, fingerprint)
        _set_failed(self, failed)


_set_order_id = slot_setter(SagaRequest, "order_id")
_set_input = slot_setter(SagaRequest, "input")
_set_fingerprint = slot_setter(SagaRequest, "fingerprint")
_set_failed = slot_setter(SagaRequest, "failed")


def saga_request(vault: CardVault, request: Parsed | Rejected) -> SagaRequest:
    """The saga of ``request`` (see the module docstring)."""
    if isinstance(request, Rejected):
        return SagaRequest(
            request.order_id,
            {"order_id": request.order_id, "rejected": request.reason},
            vault.fingerprint(request.fingerprint),
            f"invalid order: {request.reason}",
        )
    order = request.order.normalized()
    data = order.to_json()
    # fingerprint(data) is order.fingerprint(), without building the JSON form twice.
    return SagaRequest(order.order_id, vault.seal(data), vault.fingerprint(fingerprint(data)), None)
