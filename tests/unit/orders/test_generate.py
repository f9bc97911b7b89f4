"""The seeded workload generator."""

from __future__ import annotations

import json
from collections import Counter
from itertools import islice

import pytest

from ordersaga.orders.demo import demo_world
from ordersaga.orders.parse import Parsed, Rejected, Unreadable, parse_text
from ordersaga.proving.generate import (
    REFERENCE_DATE,
    GeneratedLine,
    Kind,
    Mix,
    bench_world,
    generate_orders,
    generate_workload,
)

from .sequential import sequential_outcomes

FULL_MIX = Mix(resubmit_same=0.03, resubmit_different=0.03)


def workload(n: int = 3000, seed: int = 11, **options: object) -> list[GeneratedLine]:
    options.setdefault("world", demo_world())
    options.setdefault("mix", FULL_MIX)
    options.setdefault("hot_items", ("GPU", "CONSOLE"))
    options.setdefault("hot_share", 0.05)
    return list(generate_workload(n, seed=seed, **options))  # type: ignore[arg-type]


def test_same_seed_same_lines_other_seed_other_lines() -> None:
    assert workload(seed=3) == workload(seed=3)
    assert [g.line for g in workload(seed=3)] != [g.line for g in workload(seed=4)]
    world = demo_world()
    assert list(generate_orders(200, seed=5, world=world)) == list(
        generate_orders(200, seed=5, world=world)
    )


def test_generate_orders_yields_the_workload_lines() -> None:
    world = demo_world()
    lines = list(generate_orders(300, seed=9, world=world, mix=FULL_MIX))
    assert lines == [g.line for g in generate_workload(300, seed=9, world=world, mix=FULL_MIX)]


def test_the_mix_contains_every_kind() -> None:
    kinds = Counter(g.kind for g in workload())
    assert set(kinds) == set(Kind), set(Kind) - set(kinds)
    assert kinds[Kind.CONFIRM] > kinds[Kind.DECLINED_CARD] > 0


def test_every_line_parses_as_its_kind_says() -> None:
    for generated in workload():
        result = parse_text(generated.line)
        if generated.kind is Kind.MALFORMED:
            assert isinstance(result, Unreadable), generated
            assert generated.order_id is None and generated.expected is None
        elif generated.kind is Kind.INVALID:
            assert isinstance(result, Rejected), generated
            assert result.order_id == generated.order_id
        else:
            assert isinstance(result, Parsed), (generated, result)
            assert result.order.order_id == generated.order_id


def test_expectations_match_sequential_processing() -> None:
    lines = workload()
    results = sequential_outcomes((g.line.encode() for g in lines), demo_world(), REFERENCE_DATE)
    assert [status for _, _, status in results] == [g.expected for g in lines]


def test_intended_failures_fail() -> None:
    failing = set(Kind) - {Kind.CONFIRM, Kind.HOT, Kind.RESUBMIT_SAME, Kind.MALFORMED}
    for generated in workload():
        if generated.kind in failing:
            assert generated.expected == "failed", generated


def test_order_ids_are_unique_except_resubmissions() -> None:
    lines = workload()
    fresh = [g.order_id for g in lines if g.order_id and not g.kind.startswith("resubmit")]
    assert len(fresh) == len(set(fresh))
    seen = set(fresh)
    assert all(g.order_id in seen for g in lines if g.kind.startswith("resubmit"))
    assert all(g.order_id.startswith("o") for g in lines if g.order_id)
    assert all(g.order_id.startswith("x-") for g in workload(50, id_prefix="x-") if g.order_id)


def test_json_share_selects_the_form() -> None:
    def forms(share: float) -> set[bool]:
        return {
            g.line.startswith("{")
            for g in workload(300, json_share=share)
            if g.kind is not Kind.MALFORMED
        }

    assert forms(0.0) == {False}
    assert forms(1.0) == {True}
    assert forms(0.5) == {False, True}


def test_clean_workload_on_the_bench_world_confirms_everything() -> None:
    lines = list(generate_workload(2000, seed=1, world=bench_world(), mix=Mix.clean()))
    assert {g.kind for g in lines} == {Kind.CONFIRM}
    assert {g.expected for g in lines} == {"confirmed"}


def test_clean_workload_fails_each_step_with_its_share() -> None:
    mix = Mix.clean(fail_reserve=0.1, fail_ship=0.05, fail_pay=0.02)
    lines = list(generate_workload(4000, seed=2, world=bench_world(), mix=mix))
    kinds = Counter(g.kind for g in lines)
    assert 300 < kinds[Kind.OUT_OF_STOCK] < 500
    assert 120 < kinds[Kind.UNSERVED_COUNTRY] < 280
    assert 40 < kinds[Kind.DECLINED_CARD] < 130
    assert set(kinds) == {
        Kind.CONFIRM,
        Kind.OUT_OF_STOCK,
        Kind.UNSERVED_COUNTRY,
        Kind.DECLINED_CARD,
    }
    assert all((g.expected == "confirmed") == (g.kind is Kind.CONFIRM) for g in lines)


@pytest.mark.parametrize("stock", [0, 1, 7])
def test_single_hot_item_with_stock_s_confirms_exactly_s(stock: int) -> None:
    world = bench_world(hot_stock=stock)
    lines = list(
        generate_workload(
            100, seed=4, world=world, mix=Mix.clean(), hot_items=("HOT",), hot_share=1.0
        )
    )
    assert {g.kind for g in lines} == {Kind.HOT}
    assert sum(g.expected == "confirmed" for g in lines) == stock
    for g in lines:
        result = parse_text(g.line)
        assert isinstance(result, Parsed)
        assert [i.item_id for i in result.order.items] == ["HOT"]


def test_endless_workload() -> None:
    endless = generate_orders(None, seed=1, world=bench_world())
    assert len(list(islice(endless, 500))) == 500


def test_bench_world() -> None:
    world = bench_world(items=5, stock=9, hot_stock=2, hot_item="X")
    assert sorted(world.inventory.items) == ["I001", "I002", "I003", "I004", "I005", "X"]
    assert world.inventory.items["X"].stock == 2
    assert world.inventory.items["I003"].stock == 9
    assert json.loads(json.dumps(world.to_json())) == world.to_json()


@pytest.mark.parametrize(
    "mix",
    [
        {"invalid": -0.1},
        {"malformed": 1.5},
        {"out_of_stock": 0.6, "declined_card": 0.6},
    ],
)
def test_mix_shares_are_validated(mix: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="mix shares"):
        Mix(**mix)


def test_other_options_are_validated() -> None:
    with pytest.raises(ValueError):
        list(generate_workload(1, seed=1, world=bench_world(), hot_share=2.0))
