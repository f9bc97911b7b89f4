"""The shipping service: prepares a shipment and prices it.

Actions (``ref`` = ``<saga id>:<step>`` of the key)::

    prepare   (action)      {"order_id": str,
                             "address": {"street": str, "city": str, "country": str},
                             "weight_kg": "<decimal str>"}
        ok       {"cost_cents": int}
                 cost = base_cost + cost_per_kg * weight, rounded half-up to the cent (exact)
        refused  "country 'XX' is not served" (compared case-insensitively)
                 | "weight 31.5 kg exceeds the maximum of 30 kg" | "shipment cancelled"
    cancel    (compensate)  {"order_id": str}              ok {"state": "cancelled"}
        prepared → cancelled; unseen → tombstone; cancelled → no-op; scheduled → refused
    schedule  (confirm)     {"order_id": str (optional)}   ok {"state": "scheduled"}
        prepared → scheduled; scheduled → no-op; otherwise refused

Tables (besides the kit's ``schema_version``, ``config``, ``idempotency``)::

    shipments (ref TEXT PK, order_id TEXT, street TEXT, city TEXT, country TEXT,
               weight_kg TEXT decimal, cost_cents BIGINT,
               state TEXT 'prepared'|'scheduled'|'cancelled', tombstone BIGINT 0|1,
               version BIGINT, created_at, updated_at DOUBLE PRECISION)

Stored config (``config`` table, service ``shipping``)::

    {"countries": [str, ...], "base_cost_cents": int, "cost_per_kg_cents": int,
     "max_weight_kg": "<decimal str>"}
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from decimal import Decimal, localcontext
from typing import Any, NamedTuple, Self

from ordersaga.db import Database, Row
from ordersaga.errors import ConfigError
from ordersaga.money import round_half_up_cents
from ordersaga.participant import fields
from ordersaga.participant.kit import Action, Footprint, Plan, Reader, RunnerOptions, Write
from ordersaga.participant.lifecycle import Lifecycle
from ordersaga.participant.schema import CLUSTERED
from ordersaga.participant.service import KitService
from ordersaga.protocol.messages import Phase, Reply, ReplyStatus
from ordersaga.services.config import ShippingConfig
from ordersaga.slots import tuple_new

#: Read once (see :mod:`ordersaga.saga.driver`: a member read through its enum class takes the
#: metaclass's slow attribute path on Python 3.11, ~0.9k instructions): the very member.
_OK = ReplyStatus.OK

__all__ = ["PrepareRequest", "ShippingService", "parse_prepare", "shipping_cost_cents"]

# A state CHECK is a chain of ORs, not IN (...): SQLite builds a temporary table for an IN list
# on every INSERT and UPDATE of the row (about 4 µs each), the ORs cost nothing.
DDL = f"""
CREATE TABLE IF NOT EXISTS shipments (
    ref TEXT PRIMARY KEY,
    order_id TEXT NOT NULL,
    street TEXT NOT NULL DEFAULT '',
    city TEXT NOT NULL DEFAULT '',
    country TEXT NOT NULL DEFAULT '',
    weight_kg TEXT NOT NULL DEFAULT '0',
    cost_cents BIGINT NOT NULL DEFAULT 0,
    state TEXT NOT NULL CHECK (state = 'prepared' OR state = 'scheduled' OR state = 'cancelled'),
    tombstone BIGINT NOT NULL DEFAULT 0,
    version BIGINT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
) {CLUSTERED};
CREATE INDEX IF NOT EXISTS shipments_order ON shipments (order_id)
"""

LIFECYCLE = Lifecycle(
    table="shipments",
    noun="shipment",
    initial="prepared",
    confirmed="scheduled",
    cancelled="cancelled",
    compensate_verb="cancel",
    confirm_verb="schedule",
    columns=(),  # its transitions have no effects
)

_CLAIM = (
    "INSERT INTO shipments (ref, order_id, street, city, country, weight_kg, cost_cents, state,"
    " tombstone, version, created_at, updated_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, 'prepared', 0, 1, ?, ?)"
)

# Plain decimal notation only: an exponent ("1E+999999") could make exact arithmetic explode.
_WEIGHT = re.compile(r"[0-9]{1,30}(\.[0-9]{1,30})?")


class PrepareRequest(NamedTuple):
    """A parsed shipment (an immutable value; a named tuple, as ReserveRequest is)."""

    order_id: str
    street: str
    city: str
    country: str
    weight_kg: Decimal


def parse_weight(text: str) -> Decimal:
    """A non-negative decimal weight in plain notation (``"1.5"``); BadPayload otherwise."""
    if not _WEIGHT.fullmatch(text):
        raise fields.BadPayload(f"'weight_kg' must be a decimal string like '1.5', got {text!r}")
    return Decimal(text)


def parse_prepare(payload: Mapping[str, Any]) -> PrepareRequest:
    order_id = fields.order_id(payload)
    address = fields.mapping(payload.get("address"), "'address'")
    try:
        street = fields.text(address, "street", empty=True)
        city = fields.text(address, "city", empty=True)
        country = fields.text(address, "country")
    except fields.BadPayload as exc:
        raise fields.BadPayload(f"address: {exc}") from None
    weight = parse_weight(fields.text(payload, "weight_kg", max_length=64))
    return tuple_new(PrepareRequest, (order_id, street, city, country, weight))


def shipping_cost_cents(base_cents: int, per_kg_cents: int, weight_kg: Decimal) -> int:
    """``base + per_kg * weight`` in currency units, rounded half-up to whole cents, exactly."""
    with localcontext() as ctx:
        ctx.prec = 100  # weights have at most 60 digits: no rounding before the final one
        amount = (Decimal(base_cents) + Decimal(per_kg_cents) * weight_kg) / 100
        return round_half_up_cents(amount)


def config_to_json(config: ShippingConfig) -> dict[str, Any]:
    """The stored form of ``config``, validated (a bad one is a :class:`ConfigError`)."""
    for name in ("base_cost_cents", "cost_per_kg_cents"):
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"shipping: {name} must be an integer >= 0")
    max_weight = Decimal(config.max_weight_kg)
    if not max_weight.is_finite() or max_weight < 0:
        raise ConfigError("shipping: max_weight_kg must be a decimal >= 0")
    if not all(isinstance(c, str) and c.strip() for c in config.countries):
        raise ConfigError("shipping: countries must be non-empty strings")
    return {
        "countries": sorted(config.countries),
        "base_cost_cents": config.base_cost_cents,
        "cost_per_kg_cents": config.cost_per_kg_cents,
        "max_weight_kg": format(max_weight, "f"),
    }


def _country_key(country: str) -> str:
    return country.strip().casefold()


def _parse_order(payload: Mapping[str, Any]) -> str:
    return fields.order_id(payload)


def _parse_optional_order(payload: Mapping[str, Any]) -> str | None:
    return None if payload.get("order_id") is None else fields.order_id(payload)


async def _no_effects(reader: Reader, row: Row) -> list[Write]:
    return []


def _preparing(ref: str, _req: PrepareRequest) -> Footprint:
    """A shipment touches its own row only."""
    return LIFECYCLE.own(ref)


#: A cancellation or a scheduling touches its own row only.
_MOVING = LIFECYCLE.footprint()


class ShippingService(KitService):
    """The shipping participant; see the module docstring for its commands and tables."""

    name = "shipping"
    ddl = DDL
    lifecycle = LIFECYCLE

    countries: frozenset[str]
    base_cost_cents: int
    cost_per_kg_cents: int
    max_weight_kg: Decimal

    @classmethod
    async def open(
        cls,
        db: Database,
        config: ShippingConfig | None = None,
        *,
        options: RunnerOptions | None = None,
    ) -> Self:
        """Open (creating and seeding a new database from ``config``) the service on ``db``."""
        options = options or RunnerOptions()
        wanted = None if config is None else config_to_json(config)
        stored = await cls._prepare_database(db, wanted, [], options)
        return cls(db, stored, options)

    def _load_config(self, stored: Mapping[str, Any]) -> None:
        self.countries = frozenset(_country_key(c) for c in stored["countries"])
        self.base_cost_cents = int(stored["base_cost_cents"])
        self.cost_per_kg_cents = int(stored["cost_per_kg_cents"])
        self.max_weight_kg = Decimal(stored["max_weight_kg"])

    def actions(self) -> Sequence[Action[Any]]:
        return (
            Action("prepare", Phase.ACTION, parse_prepare, self._prepare, footprint=_preparing),
            Action(
                "cancel",
                Phase.COMPENSATE,
                _parse_order,
                LIFECYCLE.compensator(_no_effects),
                footprint=_MOVING,
            ),
            Action(
                "schedule",
                Phase.CONFIRM,
                _parse_optional_order,
                LIFECYCLE.confirmer(_no_effects),
                footprint=_MOVING,
                shortcut=LIFECYCLE.confirm_shortcut(),  # scheduling has no effects
            ),
        )

    def _refusal(self, req: PrepareRequest) -> Reply | None:
        if _country_key(req.country) not in self.countries:
            return Reply.refused(f"country {req.country!r} is not served")
        if req.weight_kg > self.max_weight_kg:
            return Reply.refused(
                f"weight {req.weight_kg} kg exceeds the maximum of {self.max_weight_kg} kg"
            )
        return None

    async def _prepare(self, reader: Reader, ref: str, req: PrepareRequest, now: float) -> Plan:
        refusal = self._refusal(req)
        if refusal is not None:
            return Plan(refusal)
        cost = shipping_cost_cents(self.base_cost_cents, self.cost_per_kg_cents, req.weight_kg)
        order_id, street, city, country, weight = req  # every field
        params = (ref, order_id, street, city, country, format(weight, "f"), cost, now, now)
        insert = tuple_new(Write, (_CLAIM, params, 1))
        # The body with its canonical JSON (an int: nothing to escape), never encoded again.
        reply = Reply(_OK, {"cost_cents": cost}, None, f'{{"cost_cents":{cost}}}')
        return Plan(reply, claim=insert)
