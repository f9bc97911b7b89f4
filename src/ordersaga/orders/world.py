"""The world file (CONTRACT section 3): the catalogue and rules a new data dir starts from.

:func:`load_world` and :func:`parse_world` return a frozen :class:`World`, or raise
:class:`ordersaga.errors.ConfigError` with a one-line message that names the file and the field::

    world file w.json: items.A.price: amount has more than two decimals: '1.234'

Schema (every field required unless marked optional; unknown fields are errors, so a misspelt
field is reported rather than silently ignored)::

    items                   object: item id -> {price, stock, weight_kg}; ids follow the order
                            rules for item ids
      price                 money: a decimal string with at most two decimals, e.g. "12.50"
      stock                 integer >= 0
      weight_kg             decimal >= 0, a JSON number or a decimal string
    payment.methods         non-empty list of distinct method names
    payment.default_credit_limit    money
    payment.credit_limits   (optional) object: user id (a string of digits) -> money
    shipping.countries      non-empty list of distinct names, compared upper-cased
    shipping.base_cost      money
    shipping.cost_per_kg    money
    shipping.max_weight_kg  decimal >= 0

Money is never read from a JSON number: ``"price": 12.5`` is an error that says to quote it, so
no amount ever passes through binary floating point. :meth:`World.to_json` writes the canonical
form, which :func:`parse_world` reads back to an equal world.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TypeVar

from ordersaga.errors import ConfigError
from ordersaga.money import cents_from_str, cents_to_str
from ordersaga.orders.rules import InvalidInput, check_item_id, check_method, check_user_id
from ordersaga.protocol.messages import fingerprint as json_fingerprint
from ordersaga.services.config import InventoryConfig, ItemSpec, PaymentConfig, ShippingConfig

__all__ = ["World", "load_world", "parse_world", "parse_world_text"]

_MAX_COUNT = 2**63 - 1

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class World:
    """The initial state of the three services. Treat the mappings inside as read-only."""

    inventory: InventoryConfig
    shipping: ShippingConfig
    payment: PaymentConfig

    def to_json(self) -> dict[str, Any]:
        """The canonical world file content (sorted, weights as decimal strings)."""
        items = self.inventory.items
        limits = self.payment.credit_limits_cents
        return {
            "items": {
                item_id: {
                    "price": cents_to_str(items[item_id].price_cents),
                    "stock": items[item_id].stock,
                    "weight_kg": _decimal_text(items[item_id].weight_kg),
                }
                for item_id in sorted(items)
            },
            "payment": {
                "methods": sorted(self.payment.methods),
                "default_credit_limit": cents_to_str(self.payment.default_credit_limit_cents),
                "credit_limits": {str(user): cents_to_str(limits[user]) for user in sorted(limits)},
            },
            "shipping": {
                "countries": sorted(self.shipping.countries),
                "base_cost": cents_to_str(self.shipping.base_cost_cents),
                "cost_per_kg": cents_to_str(self.shipping.cost_per_kg_cents),
                "max_weight_kg": _decimal_text(self.shipping.max_weight_kg),
            },
        }

    def fingerprint(self) -> str:
        """SHA-256 of the canonical JSON: equal worlds have equal fingerprints."""
        return json_fingerprint(self.to_json())


class _FieldError(Exception):
    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")


class _DuplicateKey(ValueError):
    pass


def load_world(path: str | os.PathLike[str]) -> World:
    """Read and validate a world file; every problem is a ConfigError naming the file."""
    source = f"world file {os.fspath(path)}"
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{source}: not UTF-8 text") from None
    return parse_world_text(text, source=source)


def parse_world_text(text: str, *, source: str = "world file") -> World:
    """Parse the JSON text of a world file (floats read as exact decimals)."""
    try:
        data = json.loads(text, parse_float=Decimal, object_pairs_hook=_reject_duplicates)
    except json.JSONDecodeError as exc:
        message = f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        raise ConfigError(f"{source}: {message}") from None
    except _DuplicateKey as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except (ValueError, RecursionError) as exc:
        raise ConfigError(f"{source}: invalid JSON: {type(exc).__name__}") from None
    return parse_world(data, source=source)


def parse_world(data: object, *, source: str = "world file") -> World:
    """Validate already-decoded JSON data into a World; raise ConfigError naming the field."""
    try:
        top = _object(data, "", required=("items", "payment", "shipping"))
        return World(
            inventory=_inventory(top["items"]),
            shipping=_shipping(top["shipping"]),
            payment=_payment(top["payment"]),
        )
    except _FieldError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(f"duplicate key {key!r}")
        result[key] = value
    return result


# -- sections ------------------------------------------------------------------------------------


def _inventory(value: object) -> InventoryConfig:
    entries = _object(value, "items")
    items: dict[str, ItemSpec] = {}
    for item_id, spec in entries.items():
        path = f"items.{item_id}"
        _checked(check_item_id, item_id, path)
        fields = _object(spec, path, required=("price", "stock", "weight_kg"))
        items[item_id] = ItemSpec(
            price_cents=_money(fields["price"], f"{path}.price"),
            stock=_count(fields["stock"], f"{path}.stock"),
            weight_kg=_decimal(fields["weight_kg"], f"{path}.weight_kg"),
        )
    return InventoryConfig(items=items)


def _payment(value: object) -> PaymentConfig:
    fields = _object(
        value,
        "payment",
        required=("methods", "default_credit_limit"),
        optional=("credit_limits",),
    )
    methods = _names(fields["methods"], "payment.methods", check_method)
    limits: dict[int, int] = {}
    for user, limit in _object(fields.get("credit_limits", {}), "payment.credit_limits").items():
        path = f"payment.credit_limits.{user}"
        user_id = _checked(check_user_id, user, path)
        if user_id in limits:
            raise _FieldError(path, f"user {user_id} is listed twice")
        limits[user_id] = _money(limit, path)
    return PaymentConfig(
        methods=frozenset(methods),
        default_credit_limit_cents=_money(
            fields["default_credit_limit"], "payment.default_credit_limit"
        ),
        credit_limits_cents=limits,
    )


def _shipping(value: object) -> ShippingConfig:
    fields = _object(
        value, "shipping", required=("countries", "base_cost", "cost_per_kg", "max_weight_kg")
    )
    countries = _names(fields["countries"], "shipping.countries", _country)
    return ShippingConfig(
        countries=frozenset(countries),
        base_cost_cents=_money(fields["base_cost"], "shipping.base_cost"),
        cost_per_kg_cents=_money(fields["cost_per_kg"], "shipping.cost_per_kg"),
        max_weight_kg=_decimal(fields["max_weight_kg"], "shipping.max_weight_kg"),
    )


# -- field readers -------------------------------------------------------------------------------


def _object(
    value: object, path: str, *, required: Iterable[str] = (), optional: Iterable[str] = ()
) -> dict[str, Any]:
    """A JSON object; when ``required`` is given, exactly those keys plus ``optional`` ones."""
    where = path or "top level"
    if not isinstance(value, dict):
        raise _FieldError(where, f"must be a JSON object, got {_kind(value)}")
    required = tuple(required)
    if required:
        allowed = set(required) | set(optional)
        for key in value:
            if key not in allowed:
                raise _FieldError(_join(path, key), "unknown field")
        for key in required:
            if key not in value:
                raise _FieldError(_join(path, key), "missing")
    return value


def _names(value: object, path: str, check: Callable[[str], str]) -> list[str]:
    if not isinstance(value, list) or not value:
        raise _FieldError(path, f"must be a non-empty list of strings, got {_kind(value)}")
    names: list[str] = []
    for index, name in enumerate(value):
        where = f"{path}[{index}]"
        if not isinstance(name, str):
            raise _FieldError(where, f"must be a string, got {_kind(name)}")
        checked = _checked(check, name, where)
        if checked in names:
            raise _FieldError(where, f"{checked!r} is listed twice")
        names.append(checked)
    return names


def _country(name: str) -> str:
    name = name.strip().upper()
    if not name or not name.isprintable():
        raise InvalidInput(f"a country must be a non-empty printable name, got {name!r}")
    return name


def _money(value: object, path: str) -> int:
    if not isinstance(value, str):
        raise _FieldError(path, f'must be a decimal string such as "12.50", not {_kind(value)}')
    try:
        return cents_from_str(value)
    except ValueError as exc:
        raise _FieldError(path, str(exc)) from None


def _count(value: object, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_COUNT:
        raise _FieldError(path, f"must be a non-negative integer, got {_show(value)}")
    return value


def _decimal(value: object, path: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
        raise _FieldError(path, f"must be a non-negative decimal, got {_kind(value)}")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        number = Decimal("NaN")
    if not number.is_finite() or number < 0:
        raise _FieldError(path, f"must be a non-negative decimal, got {_show(value)}")
    return number


def _checked(check: Callable[[Any], T], value: Any, path: str) -> T:
    try:
        return check(value)
    except InvalidInput as exc:
        raise _FieldError(path, str(exc)) from None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float | Decimal):
        return f"the JSON number {value}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return f"the string {_show(value)}"


def _show(value: object) -> str:
    text = repr(value) if not isinstance(value, Decimal) else str(value)
    return text if len(text) <= 40 else text[:40] + "..."


def _decimal_text(number: Decimal) -> str:
    """A decimal as plain text without exponent or trailing zeros ("30", "0.5")."""
    return format(number.normalize(), "f")
