"""The order saga: the one place that knows both orders and the saga engine.

reserve inventory → prepare shipment (priced by weight) → authorize payment (items + shipping,
the pivot) → confirm all three (commit the reservation, schedule the shipment, capture the
payment). Each step's call is built from the order (the saga input) and the results of the
steps before it: the reservation reports the items' total price and weight, the shipment its
cost, and the payment authorizes their sum.
"""

from __future__ import annotations

from typing import Any

from ordersaga.saga.definition import Invocation, SagaContext, SagaDefinition, Step, StepKind

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
    return Invocation(INVENTORY, "reserve", {"order_id": ctx.input["order_id"], "items": items})


def prepare_shipment(ctx: SagaContext) -> Invocation:
    payload = {
        "order_id": ctx.input["order_id"],
        "address": dict(ctx.input["shipping_address"]),
        "weight_kg": ctx.results["reserve"]["weight_kg"],
    }
    return Invocation(SHIPPING, "prepare", payload)


def authorize_payment(ctx: SagaContext) -> Invocation:
    payment = ctx.input["payment_info"]
    amount = int(ctx.results["reserve"]["items_cents"]) + int(ctx.results["ship"]["cost_cents"])
    payload = {
        "order_id": ctx.input["order_id"],
        "user_id": ctx.input["user_id"],
        "amount_cents": amount,
        "method": payment["method"],
        "card_number": payment.get("card_number"),
        "expiry": payment.get("expiry"),
    }
    return Invocation(PAYMENT, "authorize", payload)


def _call(service: str, action: str) -> Any:
    def build(ctx: SagaContext) -> Invocation:
        return Invocation(service, action, _order_id(ctx))

    build.__name__ = f"{service}_{action}"
    return build


ORDER_SAGA = SagaDefinition(
    ORDER_SAGA_NAME,
    (
        Step("reserve", StepKind.COMPENSATABLE, reserve, _call(INVENTORY, "release")),
        Step("ship", StepKind.COMPENSATABLE, prepare_shipment, _call(SHIPPING, "cancel")),
        Step("pay", StepKind.PIVOT, authorize_payment, _call(PAYMENT, "void")),
        Step("commit", StepKind.RETRIABLE, _call(INVENTORY, "commit"), confirms="reserve"),
        Step("schedule", StepKind.RETRIABLE, _call(SHIPPING, "schedule"), confirms="ship"),
        Step("capture", StepKind.RETRIABLE, _call(PAYMENT, "capture"), confirms="pay"),
    ),
)
