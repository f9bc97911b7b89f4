"""Seeded order workloads for demos, chaos tests and benchmarks.

:func:`generate_workload` yields :class:`GeneratedLine` values: the line itself (text or JSON form),
the :class:`Kind` of line it was meant to be, its order id, and the outcome expected when the lines
are processed one after another on a new data dir (``expected`` is ``"confirmed"``,
``"failed"``, or ``None`` for a malformed line that gets no outcome). Expectations come from
:class:`ordersaga.proving.reference.ReferenceModel`, so they stay exact even where an intended
failure did not come about (say, a basket that ran out of stock first). Under concurrency, orders
compete for the last units of an item (``Kind.HOT`` on purpose) and an order that fails later may
hold stock for a while: where stock runs short, which orders win can differ from the sequential
expectation (for one hot item with stock S and nothing else short, exactly S still win).
:func:`generate_orders` yields the bare lines. The same arguments and seed give the same lines.

Order ids are ``<id_prefix><counter>``, unique within one workload except the resubmissions
(``resubmit_same`` repeats an earlier order's content, perhaps in the other form and with its
items listed in another sequence; ``resubmit_different`` reuses an id with changed content).

Card expiry dates are ``MM/35``-``MM/45`` when valid and ``MM/10``-``MM/20`` when expired, so the
expectations hold for any run date between 2021 and 2035 whichever way ``YY`` is read.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

from ordersaga.orders.world import World, parse_world
from ordersaga.proving.workload import REFERENCE_DATE, GeneratedLine, Kind, LineGenerator, Mix

__all__ = [
    "REFERENCE_DATE",
    "GeneratedLine",
    "Kind",
    "Mix",
    "bench_world",
    "generate_orders",
    "generate_workload",
]


def generate_workload(
    n: int | None,
    *,
    seed: int,
    world: World,
    mix: Mix | None = None,
    hot_items: Sequence[str] = (),
    hot_share: float = 0.0,
    json_share: float = 0.5,
    id_prefix: str = "o",
) -> Iterator[GeneratedLine]:
    """``n`` lines (endless when None), deterministic for given arguments.

    ``hot_share`` of the orders meant to be confirmed ask instead for one unit of one of
    ``hot_items`` (say a single item with stock S: exactly S of them are confirmed).
    ``json_share`` of the lines use the JSON form.
    """
    if not 0.0 <= hot_share <= 1.0 or not 0.0 <= json_share <= 1.0:
        raise ValueError("hot_share and json_share must lie in [0, 1]")
    generator = LineGenerator(
        world,
        random.Random(seed),
        mix or Mix(),
        hot_items=tuple(hot_items),
        hot_share=hot_share,
        json_share=json_share,
        id_prefix=id_prefix,
    )
    count = 0
    while n is None or count < n:
        yield generator.next_line()
        count += 1


def generate_orders(
    n: int | None,
    *,
    seed: int,
    world: World,
    mix: Mix | None = None,
    hot_items: Sequence[str] = (),
    hot_share: float = 0.0,
    json_share: float = 0.5,
    id_prefix: str = "o",
) -> Iterator[str]:
    """The bare lines of :func:`generate_workload` (same arguments)."""
    workload = generate_workload(
        n,
        seed=seed,
        world=world,
        mix=mix,
        hot_items=hot_items,
        hot_share=hot_share,
        json_share=json_share,
        id_prefix=id_prefix,
    )
    for generated in workload:
        yield generated.line


def bench_world(
    *, items: int = 20, stock: int = 10**9, hot_stock: int | None = None, hot_item: str = "HOT"
) -> World:
    """A world for benchmarks: ``items`` items I001... with ``stock`` each, room to spare.

    With ``hot_stock`` it also has ``hot_item`` with that stock (for contention runs).
    Users 1 and 2 have credit limits 0.00 and 25.00; everyone else effectively none.
    """
    catalogue = {
        f"I{k:03d}": {"price": f"{1 + k % 40}.{k % 4 * 25:02d}", "stock": stock, "weight_kg": 0.1}
        for k in range(1, items + 1)
    }
    if hot_stock is not None:
        catalogue[hot_item] = {"price": "10.00", "stock": hot_stock, "weight_kg": 0.5}
    return parse_world(
        {
            "items": catalogue,
            "payment": {
                "methods": ["CreditCard", "DebitCard", "PayPal"],
                "default_credit_limit": "1000000000.00",
                "credit_limits": {"1": "0.00", "2": "25.00"},
            },
            "shipping": {
                "countries": ["US", "CA", "DE", "FR", "GB", "JP"],
                "base_cost": "4.99",
                "cost_per_kg": "1.50",
                "max_weight_kg": "30",
            },
        },
        source="bench world",
    )
