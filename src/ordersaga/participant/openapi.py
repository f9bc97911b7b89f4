"""What the service apps publish in their OpenAPI schemas: each action's payload and replies.

These JSON schemas document, for HTTP clients and API fuzzers, the payloads that the services'
parsers (``parse_reserve``, ``parse_prepare``, ``parse_authorize``, ...) accept; the parsers stay
the authority, so a request the schema allows may still be ``invalid`` (a payload over 64 KiB,
or an integer written with a fraction or an exponent, ``1.0``, which JSON Schema counts as an
integer), and one it forbids is answered ``invalid`` (400), never with a server error.
Extra, unknown fields are allowed and ignored, like the parsers do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ordersaga.participant.fields import MAX_BIGINT, MAX_TEXT
from ordersaga.protocol.messages import MAX_KEY_LENGTH, KeyState, Phase, ReplyStatus
from ordersaga.protocol.wire import CODE_OF_STATUS, IDEMPOTENCY_KEY, TOO_LARGE, UNAVAILABLE

__all__ = [
    "SERVICE_ACTIONS",
    "ActionDoc",
    "command_responses",
    "json_response",
    "key_parameter",
]

JSONSchema = dict[str, Any]
REQUEST_TIMEOUT = 408


def _text(max_length: int = MAX_TEXT, *, empty: bool = False) -> JSONSchema:
    return {"type": "string", "minLength": 0 if empty else 1, "maxLength": max_length}


def _count(minimum: int = 0) -> JSONSchema:
    return {"type": "integer", "minimum": minimum, "maximum": MAX_BIGINT}


def _object(required: list[str], **properties: JSONSchema) -> JSONSchema:
    return {"type": "object", "required": required, "properties": properties}


_ORDER_ONLY = _object(["order_id"], order_id=_text())
_OPTIONAL_ORDER = _object([], order_id={"anyOf": [_text(), {"type": "null"}]})


@dataclass(frozen=True, slots=True)
class ActionDoc:
    """One action as the OpenAPI schema shows it."""

    name: str
    phase: Phase
    summary: str
    schema: JSONSchema
    example: Mapping[str, Any]
    ok_body: str  # what an ``ok`` reply's body holds
    refusals: tuple[str, ...] = field(default=())


SERVICE_ACTIONS: Mapping[str, tuple[ActionDoc, ...]] = {
    "inventory": (
        ActionDoc(
            "reserve",
            Phase.ACTION,
            "Reserve stock for an order: all items or none",
            _object(
                ["order_id", "items"],
                order_id=_text(),
                items={
                    "type": "array",
                    "minItems": 1,
                    "items": _object(["item_id", "quantity"], item_id=_text(), quantity=_count(1)),
                },
            ),
            {"order_id": "123", "items": [{"item_id": "A", "quantity": 2}]},
            '{"items_cents": int, "weight_kg": "<decimal>", "lines": [{"item_id", "quantity",'
            ' "price_cents"}]}',
            ("unknown item", "insufficient stock", "reservation cancelled (tombstone)"),
        ),
        ActionDoc(
            "release",
            Phase.COMPENSATE,
            "Release a reservation (compensation); unseen → tombstone, repeated → no-op",
            _ORDER_ONLY,
            {"order_id": "123"},
            '{"state": "released"}',
            ("illegal transition: reservation is committed",),
        ),
        ActionDoc(
            "commit",
            Phase.CONFIRM,
            "Commit a held reservation (its stock becomes sold)",
            _OPTIONAL_ORDER,
            {"order_id": "123"},
            '{"state": "committed"}',
            ("no reservation to commit", "illegal transition: reservation is released"),
        ),
    ),
    "shipping": (
        ActionDoc(
            "prepare",
            Phase.ACTION,
            "Prepare and price a shipment",
            _object(
                ["order_id", "address", "weight_kg"],
                order_id=_text(),
                address=_object(
                    ["street", "city", "country"],
                    street=_text(empty=True),
                    city=_text(empty=True),
                    country=_text(),
                ),
                weight_kg={
                    "type": "string",
                    "pattern": "^[0-9]{1,30}(\\.[0-9]{1,30})?$",
                    "description": "a non-negative decimal in plain notation",
                },
            ),
            {
                "order_id": "123",
                "address": {"street": "1 Main St", "city": "Springfield", "country": "US"},
                "weight_kg": "1.5",
            },
            '{"cost_cents": int}',
            ("country not served", "weight exceeds the maximum", "shipment cancelled (tombstone)"),
        ),
        ActionDoc(
            "cancel",
            Phase.COMPENSATE,
            "Cancel a shipment (compensation); unseen → tombstone, repeated → no-op",
            _ORDER_ONLY,
            {"order_id": "123"},
            '{"state": "cancelled"}',
            ("illegal transition: shipment is scheduled",),
        ),
        ActionDoc(
            "schedule",
            Phase.CONFIRM,
            "Schedule a prepared shipment",
            _OPTIONAL_ORDER,
            {"order_id": "123"},
            '{"state": "scheduled"}',
            ("no shipment to schedule", "illegal transition: shipment is cancelled"),
        ),
    ),
    "payment": (
        ActionDoc(
            "authorize",
            Phase.ACTION,
            "Authorize an amount against the user's credit limit",
            _object(
                ["order_id", "user_id", "amount_cents", "method"],
                order_id=_text(),
                user_id=_count(),
                amount_cents=_count(),
                method=_text(128),
                card_number={"anyOf": [_text(64, empty=True), {"type": "null"}]},
                expiry={"anyOf": [_text(16, empty=True), {"type": "null"}]},
            ),
            {
                "order_id": "123",
                "user_id": 456,
                "amount_cents": 2999,
                "method": "CreditCard",
                "card_number": "4111111111111111",
                "expiry": "12/30",
            },
            '{"amount_cents": int, "state": "authorized"}',
            (
                "method not accepted",
                "card fails the Luhn check",
                "card expired",
                "credit limit exceeded",
                "payment cancelled (tombstone)",
            ),
        ),
        ActionDoc(
            "void",
            Phase.COMPENSATE,
            "Void an authorization (compensation); unseen → tombstone, repeated → no-op",
            _ORDER_ONLY,
            {"order_id": "123"},
            '{"state": "voided" | "declined"}',
            ("illegal transition: payment is captured",),
        ),
        ActionDoc(
            "capture",
            Phase.CONFIRM,
            "Capture an authorized payment",
            _OPTIONAL_ORDER,
            {"order_id": "123"},
            '{"state": "captured"}',
            ("no payment to capture", "illegal transition: payment is voided"),
        ),
    ),
}

REPLY_SCHEMA: JSONSchema = {
    "type": "object",
    "required": ["status", "body", "reason"],
    "properties": {
        "status": {"type": "string", "enum": [s.value for s in ReplyStatus]},
        "body": {"type": "object"},
        "reason": {"anyOf": [{"type": "string"}, {"type": "null"}]},
    },
}

UNAVAILABLE_SCHEMA: JSONSchema = _object(
    ["status", "reason"], status={"type": "string", "enum": ["unavailable"]}, reason=_text()
)

PROBE_SCHEMA: JSONSchema = {
    "type": "object",
    "required": ["state", "reply"],
    "properties": {
        "state": {"type": "string", "enum": [s.value for s in KeyState]},
        "reply": {"anyOf": [REPLY_SCHEMA, {"type": "null"}]},
    },
}

_RETRY_AFTER = {
    "Retry-After": {"description": "seconds to wait before asking again", "schema": _count()}
}


def _reply(description: str, status: ReplyStatus, **extra: Any) -> JSONSchema:
    schema = {**REPLY_SCHEMA, "properties": {**REPLY_SCHEMA["properties"]}}
    schema["properties"]["status"] = {"type": "string", "enum": [status.value]}
    return {
        "description": description,
        "content": {"application/json": {"schema": schema}},
        **extra,
    }


def json_response(description: str, schema: JSONSchema) -> JSONSchema:
    """An OpenAPI response: ``description`` and a JSON body of ``schema``."""
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def command_responses(action: ActionDoc | None = None) -> dict[int | str, JSONSchema]:
    """The documented responses of a command route (see :mod:`ordersaga.protocol.wire`)."""
    ok = "Applied, now or earlier: a repeat of the key replays the stored reply"
    refused = "Business refusal: definite, nothing applied, never worth retrying"
    if action is not None:
        ok += f". Body: {action.ok_body}"
        if action.refusals:
            refused += ". For example: " + "; ".join(action.refusals)
    return {
        CODE_OF_STATUS[ReplyStatus.OK]: _reply(ok, ReplyStatus.OK),
        CODE_OF_STATUS[ReplyStatus.INVALID]: _reply(
            "Malformed request (key, body, payload or action); nothing applied",
            ReplyStatus.INVALID,
        ),
        CODE_OF_STATUS[ReplyStatus.CONFLICT]: _reply(
            "The key was used before with a different request; nothing applied",
            ReplyStatus.CONFLICT,
        ),
        CODE_OF_STATUS[ReplyStatus.EXPIRED]: _reply(
            "First sent (Sent-At) longer ago than the message-age limit: refused unread,"
            " nothing applied; the status probe tells what earlier deliveries did",
            ReplyStatus.EXPIRED,
        ),
        TOO_LARGE: _reply("The request body is too large; nothing applied", ReplyStatus.INVALID),
        REQUEST_TIMEOUT: _reply(
            "The request body did not arrive in time; nothing applied", ReplyStatus.INVALID
        ),
        CODE_OF_STATUS[ReplyStatus.REFUSED]: _reply(refused, ReplyStatus.REFUSED),
        CODE_OF_STATUS[ReplyStatus.IN_FLIGHT]: _reply(
            "The key is being processed right now: ask again later",
            ReplyStatus.IN_FLIGHT,
            headers=_RETRY_AFTER,
        ),
        UNAVAILABLE: {
            "description": "The database is unavailable; nothing applied: retry the same key",
            "headers": _RETRY_AFTER,
            "content": {"application/json": {"schema": UNAVAILABLE_SCHEMA}},
        },
    }


def key_parameter(phase: Phase | None) -> JSONSchema:
    """The ``Idempotency-Key`` header parameter of a command route of ``phase``."""
    # Printable ASCII without spaces (the percent-encoded form); the step has no colon.
    suffix = phase.value if phase is not None else "(action|compensate|confirm)"
    return {
        "name": IDEMPOTENCY_KEY,
        "in": "header",
        "required": True,
        "description": (
            "`<saga id>:<step>:<phase>`, percent-encoded UTF-8 (letters, digits, `-._~:` as"
            " is), or an RFC 8941 string in double quotes; at most"
            f" {MAX_KEY_LENGTH} characters once decoded. A repeat with the same body gets the"
            " stored reply; with another body, 409."
        ),
        "schema": {
            "type": "string",
            "pattern": f"^[!-~]+:[!-9;-~]+:{suffix}$",
            "maxLength": 3 * 4 * MAX_KEY_LENGTH,
        },
    }


#: The security scheme of a service (or API) that requires a bearer token.
BEARER_SCHEME = "bearerToken"
UNAUTHORIZED_SCHEMA: JSONSchema = {
    "type": "object",
    "required": ["status", "reason"],
    "properties": {"status": {"enum": ["unauthorized"]}, "reason": {"type": "string"}},
}


def add_bearer_security(
    schema: dict[str, Any], public: frozenset[str], description: str
) -> dict[str, Any]:
    """``schema`` (an OpenAPI document) with a bearer scheme required by every operation whose
    path is not in ``public``, each documenting its ``401`` answer."""
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {})[BEARER_SCHEME] = {
        "type": "http",
        "scheme": "bearer",
        "description": description,
    }
    for path, operations in schema.get("paths", {}).items():
        if path in public:
            continue
        for operation in operations.values():
            operation["security"] = [{BEARER_SCHEME: []}]
            operation.setdefault("responses", {})["401"] = {
                "description": "No token, or a wrong one: nothing was done",
                "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
                "content": {"application/json": {"schema": UNAUTHORIZED_SCHEMA}},
            }
    return schema
