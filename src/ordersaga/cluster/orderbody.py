"""The order API's request body as a pydantic model: its OpenAPI schema, and every reason.

:class:`OrderBody` mirrors the JSON form of an order (CONTRACT section 2,
:mod:`ordersaga.orders.jsonform`) field by field, each checked by the same rule functions
(:mod:`ordersaga.orders.rules`), so validating a body reports *every* broken field at once, where
the stream's parser stops at the first. The parser stays the authority: a body this model accepts
is then parsed like a stream line, and a body it refuses is refused with all its reasons.
Reasons are masked (:func:`ordersaga.orders.cards.mask_card`): a card number is never echoed.
"""

from __future__ import annotations

import contextlib
import json
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError
from pydantic import field_validator as check

from ordersaga.orders import rules
from ordersaga.orders.cards import mask_card
from ordersaga.orders.parse import Parsed, Rejected, Skip, Unreadable, parse_line
from ordersaga.orders.textform import address_from_text

__all__ = ["OrderBody", "body_reasons", "order_body_schema", "parse_body"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Item(_Model):
    item_id: StrictStr
    quantity: Annotated[StrictInt, Field(ge=1, le=rules.MAX_QUANTITY)]

    @check("item_id")
    @classmethod
    def _item_id(cls, value: str) -> str:
        return rules.check_item_id(value)


class Payment(_Model):
    method: StrictStr = Field(examples=["CreditCard", "PayPal"])
    card_number: StrictStr | None = Field(default=None, description="12-19 digits")
    expiry: StrictStr | None = Field(default=None, description="MM/YY", examples=["12/30"])

    @check("method")
    @classmethod
    def _method(cls, value: str) -> str:
        return rules.check_method(value)

    @check("card_number")
    @classmethod
    def _card(cls, value: str | None) -> str | None:
        return None if value is None else rules.check_card_number(value)

    @check("expiry")
    @classmethod
    def _expiry(cls, value: str | None) -> str | None:
        return None if value is None else rules.check_expiry(value)


class Address(_Model):
    street: StrictStr | None = None
    city: StrictStr | None = None
    country: StrictStr

    @check("street", "city")
    @classmethod
    def _part(cls, value: str | None) -> str | None:
        return None if value is None else rules.check_address_part(value.strip(), "part")

    @check("country")
    @classmethod
    def _country(cls, value: str) -> str:
        return rules.check_country(value.strip())


def _either(schema: dict[str, Any], other: dict[str, Any]) -> None:
    """Document a field that also takes ``other`` (its before-validator converts it)."""
    kept = {k: schema.pop(k) for k in ("type", "$ref", "minimum", "maximum") if k in schema}
    schema["anyOf"] = [kept, other]


class OrderBody(_Model):
    """One order in the JSON form (unknown fields are ignored)."""

    order_id: StrictStr | StrictInt
    user_id: int = Field(
        description="a non-negative integer below 2**63 (or a string of its digits)",
        json_schema_extra=lambda schema: _either(schema, {"type": "string"}),
    )
    items: Annotated[list[Item], Field(min_length=1)]
    payment_info: Payment
    shipping_address: Address = Field(
        description="an object, or a text-form address 'street, city, country' (a string)",
        json_schema_extra=lambda schema: _either(schema, {"type": "string"}),
    )

    @check("user_id", mode="before")
    @classmethod
    def _user(cls, value: object) -> int:
        return rules.check_user_id(value)

    @check("shipping_address", mode="before")
    @classmethod
    def _address(cls, value: object) -> object:
        if isinstance(value, str):
            address = address_from_text(value)
            return {"street": address.street, "city": address.city, "country": address.country}
        return value


def body_reasons(data: Any) -> list[str]:
    """Every reason ``data`` is not a valid order body (masked); [] when it is one."""
    try:
        OrderBody.model_validate(data)
    except ValidationError as exc:
        reasons = []
        for error in exc.errors(include_url=False, include_input=False):
            where = ".".join(str(part) for part in error["loc"])
            message = str(error["msg"]).removeprefix("Value error, ")
            reasons.append(mask_card(f"{where}: {message}" if where else message))
        return reasons
    return []


def order_body_schema() -> tuple[dict[str, Any], dict[str, Any]]:
    """The body's JSON schema and the definitions it refers to (OpenAPI components)."""
    schema = OrderBody.model_json_schema(ref_template="#/components/schemas/{model}")
    definitions = schema.pop("$defs", {})
    return schema, definitions


def parse_body(raw: bytes, content_type: str) -> Parsed | list[str] | str:
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
