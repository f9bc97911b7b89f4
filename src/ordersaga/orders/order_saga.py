"""The order saga: the one place that knows both orders and the saga engine.

reserve inventory → prepare shipment (priced by weight) → authorize payment (items + shipping,
the pivot) → confirm all three (commit the reservation, schedule the shipment, capture the
payment). Each step's call is built from the order (the saga input) and the results of the
steps before it: the reservation reports the items' total price and weight, the shipment its
cost, and the payment authorizes their sum.

The card fields of the input are sealed (:mod:`ordersaga.orders.vault`): the payment step opens
them to build its call, and the decision's write erases them (the definition's ``redact``).
:func:`order_saga` builds the definition around the vault that opens them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ordersaga.orders.vault import CardVault, SealedCardError, redact
from ordersaga.saga.definition import (
    Invocation,
    SagaContext,
    SagaDefinition,
    Step,
    StepKind,
    invocation,
)

ORDER_SAGA_NAME = "order"

INVENTORY, SHIPPING, PAYMENT = "inventory", "shipping", "payment"
SERVICES = (INVENTORY, SHIPPING, PAYMENT)
#: The service each step of the order saga calls (its compensation and confirmation too).
STEP_SERVICES = {
    "reserve": INVENTORY,
    "commit": INVENTORY,
    "ship": SHIPPING,
    "schedule": SHIPPING,
    "pay": PAYMENT,
    "capture": PAYMENT,
}
#: The step whose resource (``<saga id>:<step>``) each service keeps for an order.
RESOURCE_STEPS = {INVENTORY: "reserve", SHIPPING: "ship", PAYMENT: "pay"}


def _order_id(ctx: SagaContext) -> dict[str, Any]:
    return {"order_id": ctx.input["order_id"]}


def reserve(ctx: SagaContext) -> Invocation:
    items = [{"item_id": i["item_id"], "quantity": i["quantity"]} for i in ctx.input["items"]]
    return invocation(INVENTORY, "reserve", {"order_id": ctx.input["order_id"], "items": items})


def prepare_shipment(ctx: SagaContext) -> Invocation:
    payload = {
        "order_id": ctx.input["order_id"],
        "address": dict(ctx.input["shipping_address"]),
        "weight_kg": ctx.results["reserve"]["weight_kg"],
    }
    return invocation(SHIPPING, "prepare", payload)


def authorizer(vault: CardVault | None) -> Callable[[SagaContext], Invocation]:
    """The payment step's call builder: it opens the sealed card with ``vault``."""

    def authorize_payment(ctx: SagaContext) -> Invocation:
        if vault is not None:
            card_number, expiry = vault.open(ctx.input)
        elif "sealed" in ctx.input["payment_info"]:
            raise SealedCardError("a sealed card opens only with the data key (order_saga(vault))")
        else:  # an input written without sealing: its card fields are plain
            card_number, expiry = CardVault.plain(ctx.input)
        amount = int(ctx.results["reserve"]["items_cents"])
        amount += int(ctx.results["ship"]["cost_cents"])
        payload = {
            "order_id": ctx.input["order_id"],
            "user_id": ctx.input["user_id"],
            "amount_cents": amount,
            "method": ctx.input["payment_info"]["method"],
            "card_number": card_number,
            "expiry": expiry,
        }
        return invocation(PAYMENT, "authorize", payload)

    return authorize_payment


def _call(service: str, action: str) -> Any:
    def build(ctx: SagaContext) -> Invocation:
        return invocation(service, action, _order_id(ctx))

    build.__name__ = f"{service}_{action}"
    return build


def order_saga(vault: CardVault | None) -> SagaDefinition:
    """The order saga, its payment step opening sealed cards with ``vault``.

    Without a vault it is the saga's shape (steps, kinds: what inspection reads); it runs only
    sagas whose input holds no sealed card (its payment step raises :class:`SealedCardError`).
    """
    return SagaDefinition(
        ORDER_SAGA_NAME,
        (
            Step("reserve", StepKind.COMPENSATABLE, reserve, _call(INVENTORY, "release")),
            Step("ship", StepKind.COMPENSATABLE, prepare_shipment, _call(SHIPPING, "cancel")),
            Step("pay", StepKind.PIVOT, authorizer(vault), _call(PAYMENT, "void")),
            Step("commit", StepKind.RETRIABLE, _call(INVENTORY, "commit"), confirms="reserve"),
            Step("schedule", StepKind.RETRIABLE, _call(SHIPPING, "schedule"), confirms="ship"),
            Step("capture", StepKind.RETRIABLE, _call(PAYMENT, "capture"), confirms="pay"),
        ),
        redact=redact,
    )


#: The order saga's shape, for code that reads logs without running sagas (no data key).
ORDER_SAGA = order_saga(None)
