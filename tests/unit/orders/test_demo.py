"""The built-in demo world and the example streams that are documented against it."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from ordersaga.orders.demo import demo_world, demo_world_text
from ordersaga.orders.parse import Parsed, parse_line
from ordersaga.orders.world import World, parse_world_text
from ordersaga.proving.reference import ReferenceModel

from .sequential import sequential_outcomes

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
TODAY = date(2026, 6, 1)


def outcomes(path: Path, world: World) -> tuple[list[str], list[int]]:
    """The outcome lines of a stream processed one by one, and its unreadable line numbers."""
    results = sequential_outcomes(path.read_bytes().splitlines(), world, TODAY)
    lines = [f"Order {order_id} {status}" for _, order_id, status in results if order_id]
    return lines, [number for number, order_id, _ in results if order_id is None]


def test_demo_world_loads_and_round_trips() -> None:
    world = demo_world()
    assert parse_world_text(demo_world_text()) == world
    assert len(world.inventory.items) >= 20
    items = world.inventory.items
    assert items["A"].price_cents == 1250 and items["A"].stock >= 100
    assert items["B"].price_cents == 300
    assert items["C"].stock == 0
    assert world.payment.methods >= {"CreditCard", "PayPal", "DebitCard"}
    assert world.payment.default_credit_limit_cents == 100_000
    assert {"US", "CA", "DE", "FR", "GB", "NL", "ES", "IT", "JP", "AU"} <= world.shipping.countries
    hot = [i for i, spec in items.items() if 0 < spec.stock <= 5]
    assert len(hot) >= 2
    low = [u for u, limit in world.payment.credit_limits_cents.items() if limit < 100_000]
    assert len(low) >= 3


def test_demo_world_is_a_fresh_value_each_time() -> None:
    assert demo_world() == demo_world()
    assert demo_world() is not demo_world()


def test_seed_example_prints_the_original_output() -> None:
    assert (EXAMPLES / "seed.txt").read_text().splitlines() == [
        "Order 123, User 456, Items: [{A, 2}, {B, 1}], Payment: CreditCard, "
        "Address: 1 Main St, Springfield, US",
        "Order 456, User 789, Items: [{C, 1}], Payment: PayPal, Address: 5 Elm St, Shelbyville, US",
    ]
    assert outcomes(EXAMPLES / "seed.txt", demo_world()) == (
        ["Order 123 confirmed", "Order 456 failed"],
        [],
    )


def test_text_example_stream() -> None:
    lines, unreadable = outcomes(EXAMPLES / "orders.txt", demo_world())
    confirmed = ["1001", "1002", "1003", "1004"]
    failed = ["1005", "1006", "1007", "1008", "1009", "1010", "1011"]
    assert lines == [
        *(f"Order {i} confirmed" for i in confirmed),
        *(f"Order {i} failed" for i in failed),
        "Order 1001 confirmed",  # same content again
        "Order 1002 failed",  # different content
        "Order 1012 failed",  # rejected by the parser
    ]
    assert len(unreadable) == 1


def test_json_example_stream() -> None:
    lines, unreadable = outcomes(EXAMPLES / "orders.jsonl", demo_world())
    confirmed = ["2001", "2002", "2003", "2004"]
    failed = ["2005", "2006", "2007", "2008", "2009", "2010", "2011"]
    assert lines == [
        *(f"Order {i} confirmed" for i in confirmed),
        *(f"Order {i} failed" for i in failed),
        "Order 2001 confirmed",
        "Order 2002 failed",
        "Order 2012 failed",
    ]
    assert len(unreadable) == 1


def test_example_failures_fail_at_the_intended_step() -> None:
    model = ReferenceModel(demo_world(), today=TODAY)
    steps: dict[str, str | None] = {}
    for raw in (EXAMPLES / "orders.txt").read_bytes().splitlines():
        result = parse_line(raw)
        if isinstance(result, Parsed) and result.order.order_id not in steps:
            steps[result.order.order_id] = model.apply(result.order).step
    assert steps == {
        "1001": None,
        "1002": None,
        "1003": None,
        "1004": None,
        "1005": "reserve",
        "1006": "ship",
        "1007": "ship",
        "1008": "pay",
        "1009": "pay",
        "1010": "pay",
        "1011": "pay",
    }
