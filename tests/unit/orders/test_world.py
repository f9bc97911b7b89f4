"""The world file: the valid form, every kind of invalid field, loading from disk."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from ordersaga.errors import ConfigError
from ordersaga.orders.world import World, load_world, parse_world, parse_world_text
from ordersaga.services.config import ItemSpec

CONTRACT_EXAMPLE: dict[str, Any] = {
    "items": {
        "A": {"price": "12.50", "stock": 100, "weight_kg": 0.5},
        "B": {"price": "3.00", "stock": 10, "weight_kg": 1.2},
    },
    "payment": {
        "methods": ["CreditCard", "PayPal"],
        "default_credit_limit": "1000.00",
        "credit_limits": {"456": "50.00"},
    },
    "shipping": {
        "countries": ["US", "DE", "FR"],
        "base_cost": "4.99",
        "cost_per_kg": "1.50",
        "max_weight_kg": 30,
    },
}


def with_change(path: str, value: object) -> dict[str, Any]:
    """The contract example with the field at dotted ``path`` set (or removed, for DELETE)."""
    data = copy.deepcopy(CONTRACT_EXAMPLE)
    *parents, last = path.split(".")
    target = data
    for key in parents:
        target = target[key]
    if value is DELETE:
        del target[last]
    else:
        target[last] = value
    return data


DELETE = object()


def test_contract_example_parses() -> None:
    world = parse_world(CONTRACT_EXAMPLE)
    assert world.inventory.items["A"] == ItemSpec(1250, 100, Decimal("0.5"))
    assert world.inventory.items["B"] == ItemSpec(300, 10, Decimal("1.2"))
    assert world.payment.methods == frozenset({"CreditCard", "PayPal"})
    assert world.payment.default_credit_limit_cents == 100_000
    assert world.payment.credit_limits_cents == {456: 5000}
    assert world.shipping.countries == frozenset({"US", "DE", "FR"})
    assert world.shipping.base_cost_cents == 499
    assert world.shipping.cost_per_kg_cents == 150
    assert world.shipping.max_weight_kg == Decimal(30)


def test_to_json_round_trips_and_is_canonical() -> None:
    world = parse_world(CONTRACT_EXAMPLE)
    again = parse_world(world.to_json())
    assert again == world
    assert again.to_json() == world.to_json()
    assert again.fingerprint() == world.fingerprint()
    assert world.to_json()["items"]["A"] == {"price": "12.50", "stock": 100, "weight_kg": "0.5"}
    assert world.to_json()["shipping"]["max_weight_kg"] == "30"
    assert json.loads(json.dumps(world.to_json())) == world.to_json()


def test_equal_worlds_written_differently_have_one_canonical_form() -> None:
    other = with_change("shipping.max_weight_kg", "30.000")
    other["shipping"]["countries"] = ["fr", " de ", "US"]
    other["items"]["A"]["weight_kg"] = "0.50"
    assert parse_world(other).to_json() == parse_world(CONTRACT_EXAMPLE).to_json()


def test_optional_credit_limits_and_string_weights() -> None:
    data = with_change("payment.credit_limits", DELETE)
    data["items"]["A"]["weight_kg"] = "0.25"
    world = parse_world(data)
    assert world.payment.credit_limits_cents == {}
    assert world.inventory.items["A"].weight_kg == Decimal("0.25")


def test_weights_given_as_floats_are_read_through_their_text() -> None:
    world = parse_world(with_change("items.A.weight_kg", 0.1))
    assert world.inventory.items["A"].weight_kg == Decimal("0.1")


@pytest.mark.parametrize(
    ("path", "value", "field", "problem"),
    [
        ("items", DELETE, "items", "missing"),
        ("items", [], "items", "object"),
        ("items.A", "12.50", "items.A", "object"),
        ("items.A.price", DELETE, "items.A.price", "missing"),
        ("items.A.price", "1.234", "items.A.price", "more than two decimals: '1.234'"),
        ("items.A.price", 12.5, "items.A.price", "decimal string"),
        ("items.A.price", 12, "items.A.price", "decimal string"),
        ("items.A.price", "-1.00", "items.A.price", "non-negative"),
        ("items.A.price", "abc", "items.A.price", "not a decimal"),
        ("items.A.price", "NaN", "items.A.price", "finite"),
        ("items.A.stock", -1, "items.A.stock", "non-negative integer"),
        ("items.A.stock", 1.5, "items.A.stock", "non-negative integer"),
        ("items.A.stock", True, "items.A.stock", "non-negative integer"),
        ("items.A.stock", "10", "items.A.stock", "non-negative integer"),
        ("items.A.weight_kg", -0.5, "items.A.weight_kg", "non-negative decimal"),
        ("items.A.weight_kg", "heavy", "items.A.weight_kg", "non-negative decimal"),
        ("items.A.weight_kg", None, "items.A.weight_kg", "non-negative decimal"),
        ("items.A.weight_kg", "Infinity", "items.A.weight_kg", "non-negative decimal"),
        ("items.A.colour", "red", "items.A.colour", "unknown field"),
        ("payment", DELETE, "payment", "missing"),
        ("payment.methods", [], "payment.methods", "non-empty list"),
        ("payment.methods", "CreditCard", "payment.methods", "non-empty list"),
        ("payment.methods", ["CreditCard", 5], "payment.methods[1]", "string"),
        ("payment.methods", ["Credit Card"], "payment.methods[0]", "payment method"),
        ("payment.methods", ["PayPal", "PayPal"], "payment.methods[1]", "listed twice"),
        ("payment.default_credit_limit", 1000, "payment.default_credit_limit", "decimal string"),
        ("payment.credit_limits", [], "payment.credit_limits", "object"),
        ("payment.credit_limits", {"bob": "5.00"}, "payment.credit_limits.bob", "user id"),
        ("payment.credit_limits", {"-4": "5.00"}, "payment.credit_limits.-4", "user id"),
        ("payment.credit_limits", {"4": 5}, "payment.credit_limits.4", "decimal string"),
        ("payment.credit_limits", {"4": "5.00", "04": "1.00"}, "payment.credit_limits.04", "twice"),
        ("payment.limit", "1.00", "payment.limit", "unknown field"),
        ("shipping", None, "shipping", "object"),
        ("shipping.countries", [], "shipping.countries", "non-empty list"),
        ("shipping.countries", ["US", ""], "shipping.countries[1]", "country"),
        ("shipping.countries", ["US", "us"], "shipping.countries[1]", "listed twice"),
        ("shipping.base_cost", "4.999", "shipping.base_cost", "more than two decimals"),
        ("shipping.cost_per_kg", 1.5, "shipping.cost_per_kg", "decimal string"),
        ("shipping.max_weight_kg", DELETE, "shipping.max_weight_kg", "missing"),
        ("shipping.max_weight_kg", -1, "shipping.max_weight_kg", "non-negative decimal"),
        ("shiping", {}, "shiping", "unknown field"),
    ],
)
def test_invalid_field_is_a_config_error_naming_it(
    path: str, value: object, field: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_world(with_change(path, value))
    message = str(info.value)
    assert message.startswith(f"world file: {field}: "), message
    assert problem in message, message
    assert "\n" not in message


@pytest.mark.parametrize("item_id", ["", "A,B", "{A}", " A", "A\tB"])
def test_invalid_item_id_is_a_config_error(item_id: str) -> None:
    data = copy.deepcopy(CONTRACT_EXAMPLE)
    data["items"][item_id] = data["items"].pop("A")
    with pytest.raises(ConfigError, match=r"world file: items\."):
        parse_world(data)


@pytest.mark.parametrize("data", [None, [], "world", 5])
def test_top_level_must_be_an_object(data: object) -> None:
    with pytest.raises(ConfigError, match="world file: top level: must be a JSON object"):
        parse_world(data)


def test_load_world_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "world.json"
    path.write_text("\ufeff" + json.dumps(CONTRACT_EXAMPLE), encoding="utf-8")
    assert load_world(path) == parse_world(CONTRACT_EXAMPLE)
    assert load_world(str(path)) == parse_world(CONTRACT_EXAMPLE)


def test_load_world_keeps_float_weights_exact(tmp_path: Path) -> None:
    path = tmp_path / "world.json"
    path.write_text(json.dumps(with_change("items.A.weight_kg", 0.30000000000000004)))
    assert load_world(path).inventory.items["A"].weight_kg == Decimal("0.30000000000000004")


def test_load_world_names_the_file_and_the_field(tmp_path: Path) -> None:
    path = tmp_path / "w.json"
    path.write_text(json.dumps(with_change("items.A.price", "1.234")))
    with pytest.raises(ConfigError) as info:
        load_world(path)
    assert str(info.value) == (
        f"world file {path}: items.A.price: amount has more than two decimals: '1.234'"
    )


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b'{"items": ', "invalid JSON at line 1 column 11"),
        (b"", "invalid JSON"),
        (b'{"items": {}, "items": {}}', "duplicate key 'items'"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"[" * 100_000, "invalid JSON"),
    ],
)
def test_unreadable_world_file(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "w.json"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=r"world file .*w\.json: ") as info:
        load_world(path)
    assert problem in str(info.value)


def test_missing_world_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read: No such file"):
        load_world(tmp_path / "absent.json")
    with pytest.raises(ConfigError, match="cannot read"):
        load_world(tmp_path)  # a directory


def test_parse_world_text_uses_the_given_source() -> None:
    with pytest.raises(ConfigError, match=r"^built-in: invalid JSON"):
        parse_world_text("{", source="built-in")


def test_world_is_frozen() -> None:
    world = parse_world(CONTRACT_EXAMPLE)
    with pytest.raises(AttributeError):
        world.inventory = world.inventory  # type: ignore[misc]
    assert isinstance(world, World)
