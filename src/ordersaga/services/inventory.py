"""The inventory service: reserves stock for an order, all items or none.

Actions (``ref`` = ``<saga id>:<step>`` of the key, see
:func:`ordersaga.protocol.messages.resource_of`)::

    reserve  (action)      {"order_id": str, "items": [{"item_id": str, "quantity": int > 0}, ...]}
        ok       {"items_cents": int, "weight_kg": "<decimal>",
                  "lines": [{"item_id": str, "quantity": int, "price_cents": int}, ...]}
                 (lines sorted by item id; an item listed twice is one line, quantities summed)
        refused  "unknown item 'X'" | "insufficient stock for 'X': 0 available, 2 wanted"
                 | "reservation cancelled" (a tombstone: it was released before it arrived)
    release  (compensate)  {"order_id": str}              ok {"state": "released"}
        held → released (stock back to available); unseen → tombstone; released → no-op;
        committed → refused
    commit   (confirm)     {"order_id": str (optional)}   ok {"state": "committed"}
        held → committed (held stock becomes sold); committed → no-op; otherwise refused

Tables (besides the kit's ``schema_version``, ``config``, ``idempotency``)::

    items (item_id TEXT PK, price_cents BIGINT, weight_kg TEXT decimal, initial_stock BIGINT,
           available BIGINT, held BIGINT, sold BIGINT, version BIGINT)
        invariant: initial_stock = available + held + sold, all >= 0
    reservations (ref TEXT PK, order_id TEXT, state TEXT 'held'|'committed'|'released',
                  lines TEXT JSON [{"item_id", "quantity", "price_cents"}], tombstone BIGINT 0|1,
                  version BIGINT, created_at, updated_at DOUBLE PRECISION)
        a tombstone is a released reservation with no lines

Items are updated in item-id order, so two transactions never wait on each other in a cycle.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Context, Decimal
from typing import Any, NamedTuple, Self

from ordersaga.db import Database, Row
from ordersaga.errors import ConfigError, ConflictError
from ordersaga.participant import fields
from ordersaga.participant.kit import Action, Footprint, Plan, Reader, RunnerOptions, Write
from ordersaga.participant.lifecycle import Lifecycle
from ordersaga.participant.schema import CLUSTERED
from ordersaga.participant.service import KitService
from ordersaga.protocol.messages import Phase, Reply, ReplyStatus, canonical_json, read_json
from ordersaga.services.config import InventoryConfig
from ordersaga.slots import tuple_new

#: Read once (see :mod:`ordersaga.saga.driver`: a member read through its enum class takes the
#: metaclass's slow attribute path on Python 3.11, ~0.9k instructions): the very member.
_OK = ReplyStatus.OK

__all__ = ["InventoryService", "ReserveRequest", "parse_reserve"]


# A state CHECK is a chain of ORs, not IN (...): SQLite builds a temporary table for an IN list
# on every INSERT and UPDATE of the row (about 4 µs each), the ORs cost nothing.
DDL = f"""
CREATE TABLE IF NOT EXISTS items (
    item_id TEXT PRIMARY KEY,
    price_cents BIGINT NOT NULL,
    weight_kg TEXT NOT NULL,
    initial_stock BIGINT NOT NULL,
    available BIGINT NOT NULL,
    held BIGINT NOT NULL,
    sold BIGINT NOT NULL,
    version BIGINT NOT NULL,
    CHECK (available >= 0 AND held >= 0 AND sold >= 0)
) {CLUSTERED};
CREATE TABLE IF NOT EXISTS reservations (
    ref TEXT PRIMARY KEY,
    order_id TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state = 'held' OR state = 'committed' OR state = 'released'),
    lines TEXT NOT NULL DEFAULT '[]',
    tombstone BIGINT NOT NULL DEFAULT 0,
    version BIGINT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
) {CLUSTERED};
CREATE INDEX IF NOT EXISTS reservations_order ON reservations (order_id)
"""

LIFECYCLE = Lifecycle(
    table="reservations",
    noun="reservation",
    initial="held",
    confirmed="committed",
    cancelled="released",
    compensate_verb="release",
    confirm_verb="commit",
    columns=("lines",),  # what _restock and _sell read
)


class ReserveRequest(NamedTuple):
    """A parsed reservation (an immutable value; a named tuple: one per command, and a tuple
    costs less to build than a frozen dataclass)."""

    order_id: str
    #: item id → summed quantity, in order of first appearance.
    lines: Mapping[str, int]


def parse_reserve(payload: Mapping[str, Any]) -> ReserveRequest:
    order_id = fields.order_id(payload)
    entries = fields.sequence(payload, "items")
    if not entries:
        raise fields.BadPayload("an order needs at least one item")
    lines: dict[str, int] = {}
    for index, entry in enumerate(entries):
        try:
            line = fields.mapping(entry, "an item")
            item_id = fields.text(line, "item_id")
            quantity = fields.integer(line, "quantity", minimum=1)
        except fields.BadPayload as exc:
            raise fields.BadPayload(f"items[{index}]: {exc}") from None
        lines[item_id] = lines.get(item_id, 0) + quantity
    return tuple_new(ReserveRequest, (order_id, lines))


def _parse_order(payload: Mapping[str, Any]) -> str:
    return fields.order_id(payload)


def _parse_optional_order(payload: Mapping[str, Any]) -> str | None:
    return None if payload.get("order_id") is None else fields.order_id(payload)


def config_to_json(config: InventoryConfig) -> dict[str, Any]:
    """The stored form of ``config``, validated (a bad one is a :class:`ConfigError`)."""
    items: dict[str, Any] = {}
    for item_id, spec in config.items.items():
        if not isinstance(item_id, str) or not item_id or len(item_id) > fields.MAX_TEXT:
            raise ConfigError(f"inventory: bad item id {item_id!r}")
        for name, value in (("price_cents", spec.price_cents), ("stock", spec.stock)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"inventory: item {item_id!r}: {name} must be an integer >= 0")
        weight = Decimal(spec.weight_kg)
        if not weight.is_finite() or weight < 0:
            raise ConfigError(f"inventory: item {item_id!r}: weight must be a decimal >= 0")
        items[item_id] = {
            "price_cents": spec.price_cents,
            "stock": spec.stock,
            "weight_kg": format(weight, "f"),
        }
    return {"items": items}


def _seed(stored: Mapping[str, Any]) -> list[Write]:
    return [
        Write(
            "INSERT INTO items (item_id, price_cents, weight_kg, initial_stock, available,"
            " held, sold, version) VALUES (?, ?, ?, ?, ?, 0, 0, 1)",
            (item_id, spec["price_cents"], spec["weight_kg"], spec["stock"], spec["stock"]),
        )
        for item_id, spec in stored["items"].items()
    ]


# A reservation's compare-and-swap of an item: on the version read, so ``held + ?`` is the held
# count read plus the quantity, as ``available`` is the count read less it (the held and sold
# counts need not be read: only what the decision looks at is).
_HOLD = (
    "UPDATE items SET available = ?, held = held + ?, version = version + 1"
    " WHERE item_id = ? AND version = ?"
)
_CLAIM = (
    "INSERT INTO reservations (ref, order_id, state, lines, tombstone, version, created_at,"
    " updated_at) VALUES (?, ?, 'held', ?, 0, 1, ?, ?)"
)
#: What a reservation reads of an item (every column a SQLite row carries costs ~2k
#: instructions to hand over: not ``*``).
_ITEM = "SELECT item_id, price_cents, weight_kg, available, version FROM items WHERE item_id = ?"
#: The lookup of n items (built once per n).
_ITEMS: dict[int, str] = {}


async def _items(reader: Reader, item_ids: Iterable[str]) -> dict[str, Row]:
    ids = sorted(set(item_ids))
    if not ids:
        return {}
    # One lookup per item in one statement: for an IN list of more than one value SQLite builds
    # a temporary table on every run (a reservation names a few items, a UNION ALL costs less).
    sql = _ITEMS.get(len(ids))
    if sql is None:
        sql = " UNION ALL ".join([_ITEM] * len(ids))
        if len(ids) <= 64:  # the usual sizes; an order of very many items is built each time
            _ITEMS[len(ids)] = sql
    rows = await reader.fetchall(sql, *ids)
    return {row["item_id"]: row for row in rows}


def _reserving(ref: str, req: ReserveRequest) -> Footprint:
    """A reservation reads and writes its items (and claims its own row)."""
    return LIFECYCLE.own(ref, *[("items", item_id) for item_id in req.lines])


#: A release or a commit moves the held units of its reservation's items (read from its row).
_MOVING = LIFECYCLE.footprint("items")


class InventoryService(KitService):
    """The inventory participant; see the module docstring for its commands and tables."""

    name = "inventory"
    ddl = DDL
    lifecycle = LIFECYCLE

    @classmethod
    async def open(
        cls,
        db: Database,
        config: InventoryConfig | None = None,
        *,
        options: RunnerOptions | None = None,
    ) -> Self:
        """Open (creating and seeding a new database from ``config``) the service on ``db``."""
        options = options or RunnerOptions()
        stored = None if config is None else config_to_json(config)
        seed = [] if stored is None else _seed(stored)
        await cls._prepare_database(db, stored, seed, options)
        return cls(db, {}, options)

    def _load_config(self, stored: Mapping[str, Any]) -> None:
        # The items table is the live state; nothing else is needed at run time.
        return None

    def actions(self) -> Sequence[Action[Any]]:
        return (
            Action("reserve", Phase.ACTION, parse_reserve, self._reserve, footprint=_reserving),
            Action(
                "release",
                Phase.COMPENSATE,
                _parse_order,
                LIFECYCLE.compensator(_restock),
                footprint=_MOVING,
            ),
            Action(
                "commit",
                Phase.CONFIRM,
                _parse_optional_order,
                LIFECYCLE.confirmer(_sell),
                footprint=_MOVING,
                shortcut=LIFECYCLE.confirm_shortcut(_sell_by_ref),
            ),
        )

    async def _reserve(self, reader: Reader, ref: str, req: ReserveRequest, now: float) -> Plan:
        items = await _items(reader, req.lines)
        refusal = _refusal(items, req.lines)
        if refusal is not None:
            return Plan(refusal)
        writes: list[Write] = []
        lines: list[dict[str, Any]] = []
        for item_id in sorted(req.lines):
            item, quantity = items[item_id], req.lines[item_id]
            params = (item["available"] - quantity, quantity, item_id, item["version"])
            writes.append(tuple_new(Write, (_HOLD, params, 1)))
            # Keys in sorted order: the reply is then its own JSON round trip (handed back as is).
            line = {"item_id": item_id, "price_cents": item["price_cents"], "quantity": quantity}
            lines.append(line)
        lines_json = canonical_json(lines)
        claim = tuple_new(Write, (_CLAIM, (ref, req.order_id, lines_json, now, now), 1))
        cents = sum(line["quantity"] * line["price_cents"] for line in lines)
        weight = _total_weight(items, req.lines)
        body = {"items_cents": cents, "lines": lines, "weight_kg": weight}  # keys sorted
        # The body's canonical JSON, put together from the lines' (encoded once): an int, and
        # a plain decimal string (digits and a point: nothing to escape).
        text = f'{{"items_cents":{cents},"lines":{lines_json},"weight_kg":"{weight}"}}'
        return Plan(Reply(_OK, body, None, text), tuple(writes), claim)


def _refusal(items: Mapping[str, Row], wanted: Mapping[str, int]) -> Reply | None:
    for item_id in wanted:
        if item_id not in items:
            return Reply.refused(f"unknown item {item_id!r}")
    for item_id, quantity in wanted.items():
        available = items[item_id]["available"]
        if available < quantity:
            return Reply.refused(
                f"insufficient stock for {item_id!r}: {available} available, {quantity} wanted"
            )
    return None


#: Exact for the weights: they have few digits, and quantities fit in a BIGINT. Its operations
#: are called on it directly, rather than made the thread's context for a block: a reservation's
#: weight is summed for every reservation, and entering a local context costs more than the sum.
_EXACT = Context(prec=100)


def _total_weight(items: Mapping[str, Row], wanted: Mapping[str, int]) -> str:
    total = Decimal(0)
    for item_id, quantity in wanted.items():
        weight = _EXACT.multiply(Decimal(items[item_id]["weight_kg"]), quantity)
        total = _EXACT.add(total, weight)
    return format(total, "f")


def _held_lines(reservation: Row) -> list[tuple[str, int]]:
    """The reservation's (item id, quantity) pairs, in item-id order."""
    return sorted(
        (line["item_id"], int(line["quantity"])) for line in read_json(reservation["lines"])
    )


# Moving held units on (to available or sold) is a relative update, not a compare-and-swap: the
# reservation's own state transition (a CAS in the same transaction) makes it happen once, and
# the counters stay exact however other writers moved them meanwhile; the CHECK constraint keeps
# ``held`` from going negative.
_RESTOCK = (
    "UPDATE items SET held = held - ?, available = available + ?, version = version + 1"
    " WHERE item_id = ?"
)
_SELL = "UPDATE items SET held = held - ?, sold = sold + ?, version = version + 1 WHERE item_id = ?"


async def _restock(reader: Reader, reservation: Row) -> list[Write]:
    """Held stock goes back to available."""
    return [tuple_new(Write, (_RESTOCK, (q, q, i), 1)) for i, q in _held_lines(reservation)]


async def _sell(reader: Reader, reservation: Row) -> list[Write]:
    """Held stock becomes sold."""
    return [tuple_new(Write, (_SELL, (q, q, i), 1)) for i, q in _held_lines(reservation)]


_LINES = "SELECT lines FROM reservations WHERE ref = ?"


async def _sell_by_ref(reader: Reader, ref: str) -> list[Write]:
    """:func:`_sell`'s writes, the reservation's lines read by its ref (commit's shortcut)."""
    reservation = await reader.fetchone(_LINES, ref)
    if reservation is None:  # the shortcut has just moved it, in this transaction
        raise ConflictError(f"inventory: reservation {ref!r} vanished")
    return await _sell(reader, reservation)
