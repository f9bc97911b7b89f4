"""The engine issue's acceptance checks, on the real pipeline with real services and SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest

from ordersaga.orders.demo import demo_world
from ordersaga.orders.world import World, parse_world
from ordersaga.proving.generate import generate_orders

from .harness import audit, run


def world_with(items: dict[str, dict[str, object]], limits: dict[str, str] | None = None) -> World:
    return parse_world(
        {
            "items": items,
            "payment": {
                "methods": ["CreditCard", "PayPal"],
                "default_credit_limit": "1000.00",
                "credit_limits": limits or {},
            },
            "shipping": {
                "countries": ["US"],
                "base_cost": "0.00",
                "cost_per_kg": "0.00",
                "max_weight_kg": 30,
            },
        }
    )


def order(order_id: str, user: int, item: str, qty: int = 1) -> str:
    return (
        f"Order {order_id}, User {user}, Items: [{{{item}, {qty}}}], Payment: PayPal,"
        " Address: 1 Main St, Springfield, US"
    )


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
def test_serial_outcomes_are_identical_with_and_without_faults(tmp_path: Path, seed: int) -> None:
    lines = list(generate_orders(120, seed=seed, world=demo_world()))
    clean, _ = run(lines, tmp_path / "clean")
    faulty, report = run(lines, tmp_path / "faulty", fault_rate=0.1, seed=seed)
    assert faulty == clean
    assert report.faults is not None and sum(report.faults.values()) > 0
    assert audit(tmp_path / "clean").ok
    assert audit(tmp_path / "faulty").ok


def test_hot_item_confirms_exactly_its_stock_under_concurrency_and_faults(tmp_path: Path) -> None:
    stock = 25
    world = world_with({"HOT": {"price": "10.00", "stock": stock, "weight_kg": 1}})
    lines = [order(f"h{i}", i, "HOT") for i in range(300)]
    outcomes, report = run(
        lines, tmp_path / "d", world=world, concurrency=64, fault_rate=0.1, seed=9
    )
    assert len(outcomes) == 300
    assert sum(line.endswith("confirmed") for line in outcomes) == stock
    faults = report.faults or {}
    for fault in ("request_lost", "response_lost", "duplicate", "late", "delay"):
        assert faults[fault] >= 20, faults  # every fault class really fired
    result = audit(tmp_path / "d")
    assert result.ok, result.violations


def test_capped_user_gets_exactly_k_orders_under_concurrency_and_faults(tmp_path: Path) -> None:
    k = 7
    world = world_with(
        {"P": {"price": "10.00", "stock": 100_000, "weight_kg": 1}}, {"5": f"{k * 10}.00"}
    )
    lines = [order(f"u{i}", 5, "P") for i in range(150)]
    outcomes, _ = run(lines, tmp_path / "d", world=world, concurrency=64, fault_rate=0.1, seed=4)
    assert sum(line.endswith("confirmed") for line in outcomes) == k
    result = audit(tmp_path / "d")
    assert result.ok, result.violations


def test_late_deliveries_after_a_compensation_are_refused_by_tombstones(tmp_path: Path) -> None:
    # A tiny retry budget and a high fault rate make unknown outcomes common: those steps are
    # compensated before the service ever saw them, and their late arrivals hit a tombstone.
    lines = list(generate_orders(300, seed=11, world=demo_world()))
    _, report = run(lines, tmp_path / "d", concurrency=16, fault_rate=0.3, seed=3, max_attempts=2)
    assert report.late_refused is not None and report.late_refused > 0
    result = audit(tmp_path / "d")
    assert result.ok, result.violations


def test_resubmission_across_runs_replays_without_executing(tmp_path: Path) -> None:
    world = world_with({"HOT": {"price": "10.00", "stock": 1, "weight_kg": 1}})
    first, _ = run([order("a", 1, "HOT"), order("b", 2, "HOT")], tmp_path / "d", world=world)
    assert first == ["Order a confirmed", "Order b failed"]
    # b again: still failed (replayed, although a's stock is unchanged); a with other content
    # fails without touching the first a; a again replays confirmed.
    second, report = run(
        [order("b", 2, "HOT"), order("a", 1, "HOT", qty=2), order("a", 1, "HOT")], tmp_path / "d"
    )
    assert second == ["Order b failed", "Order a failed", "Order a confirmed"]
    assert report.counts.replayed == 2 and report.counts.mismatched == 1
    assert report.counts.retries == 0 and report.counts.compensations == 0
    assert audit(tmp_path / "d").ok
