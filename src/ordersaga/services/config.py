"""Each service's own configuration: the part of the world it is initialised from.

A new database is seeded from these; later runs use the state stored in the database.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class ItemSpec:
    price_cents: int
    stock: int
    weight_kg: Decimal


@dataclass(frozen=True, slots=True)
class InventoryConfig:
    items: Mapping[str, ItemSpec] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ShippingConfig:
    countries: frozenset[str]  # upper-case country codes/names
    base_cost_cents: int
    cost_per_kg_cents: int
    max_weight_kg: Decimal


@dataclass(frozen=True, slots=True)
class PaymentConfig:
    methods: frozenset[str]
    default_credit_limit_cents: int
    credit_limits_cents: Mapping[int, int] = field(default_factory=dict)
