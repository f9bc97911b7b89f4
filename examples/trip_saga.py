"""Your own saga: a trip — flight, hotel, car, then the charge — on a durable SQLite saga log.

Run it::

    python examples/trip_saga.py                      # in a temporary directory
    python examples/trip_saga.py --data-dir trips     # keep the logs; run again: replayed

It books two trips. Trip T1 gets everything and is charged: confirmed. Trip T2 wants the same
car, the last one went to T1: the car desk refuses, and the engine releases T2's hotel and
flight, in reverse order. Each desk is a participant written with the kit
(:mod:`ordersaga.participant`): its own SQLite database, an idempotency record per command,
optimistic locking on its stock, and tombstones for releases that arrive before their holds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from ordersaga.participant import (
    Action,
    Database,
    KitService,
    Lifecycle,
    Phase,
    Plan,
    Reader,
    Reply,
    ReplyStatus,
    Row,
    RunnerOptions,
    Write,
    fields,
    open_database,
)
from ordersaga.saga import (
    InProcessTransport,
    Invocation,
    SagaContext,
    SagaDefinition,
    SagaEngine,
    SagaResult,
    Step,
    StepKind,
    fingerprint,
    open_store,
    recover,
)

# ----------------------------------------------------------------------------- participants

DDL = """
CREATE TABLE IF NOT EXISTS stock (
    item TEXT PRIMARY KEY,
    available BIGINT NOT NULL,
    version BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS bookings (
    ref TEXT PRIMARY KEY,
    order_id TEXT NOT NULL,
    item TEXT NOT NULL DEFAULT '',
    cents BIGINT NOT NULL DEFAULT 0,
    state TEXT NOT NULL,
    tombstone BIGINT NOT NULL DEFAULT 0,
    version BIGINT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
)
"""
# One booking per step (ref = "<trip>:<step>"); the kit's lifecycle names the owner "order_id".
BOOKING = Lifecycle(
    table="bookings",
    noun="booking",
    initial="held",
    confirmed="confirmed",
    cancelled="released",
    compensate_verb="release",
    confirm_verb="confirm",
)


@dataclass(frozen=True)
class Hold:
    trip: str
    item: str
    cents: int


def parse_hold(payload: Mapping[str, Any]) -> Hold:
    """Validate a hold; a bad payload is an ``invalid`` reply, never an exception."""
    return Hold(
        fields.text(payload, "trip"), fields.text(payload, "item"), fields.integer(payload, "cents")
    )


def parse_trip(payload: Mapping[str, Any]) -> str:
    return fields.text(payload, "trip")


class Desk(KitService):
    """A desk that holds one unit of an item per step, then confirms or releases it."""

    ddl = DDL
    lifecycle = BOOKING
    max_cents: int

    @classmethod
    async def open(cls, db: Database, stock: Mapping[str, int], max_cents: int) -> Self:
        """Open the desk on ``db``; a new database is seeded with ``stock``."""
        seed = [Write("INSERT INTO stock VALUES (?, ?, 1)", (i, n)) for i, n in stock.items()]
        options = RunnerOptions()
        stored = await cls._prepare_database(db, {"max_cents": max_cents}, seed, options)
        return cls(db, stored, options)

    def _load_config(self, stored: Mapping[str, Any]) -> None:
        self.max_cents = int(stored["max_cents"])

    def actions(self) -> Sequence[Action[Any]]:
        return (
            Action("hold", Phase.ACTION, parse_hold, self._hold),
            Action("release", Phase.COMPENSATE, parse_trip, self._release),
            Action("confirm", Phase.CONFIRM, parse_trip, self._confirm),
        )

    async def _hold(self, reader: Reader, ref: str, req: Hold, now: float) -> Plan:
        existing = await BOOKING.load(reader, ref)
        if existing is not None:  # a tombstone: released before the hold arrived
            return BOOKING.refuse_existing(existing)
        if req.cents > self.max_cents:
            return Plan(Reply.refused(f"{req.cents / 100:.2f} is over the limit"))
        stock = await reader.fetchone("SELECT * FROM stock WHERE item = ?", req.item)
        if stock is None or stock["available"] < 1:
            return Plan(Reply.refused(f"{req.item} is sold out"))
        take = Write(  # compare-and-swap: a concurrent hold makes this change 0 rows, retried
            "UPDATE stock SET available = available - 1, version = version + 1"
            " WHERE item = ? AND version = ?",
            (req.item, stock["version"]),
        )
        book = Write(
            "INSERT INTO bookings (ref, order_id, item, cents, state, version, created_at,"
            " updated_at) VALUES (?, ?, ?, ?, 'held', 1, ?, ?)",
            (ref, req.trip, req.item, req.cents, now, now),
        )
        return Plan(Reply(ReplyStatus.OK, {"item": req.item}), (take, book))

    async def _release(self, reader: Reader, ref: str, trip: str, now: float) -> Plan:
        return await BOOKING.compensate(reader, ref, trip, now, _put_back)

    async def _confirm(self, reader: Reader, ref: str, trip: str, now: float) -> Plan:
        return await BOOKING.confirm(reader, ref, trip, now, _nothing)

    async def state_of(self, ref: str) -> str:
        """The booking's state, ``-`` when this desk never saw the step."""
        row = await self.db.fetchone("SELECT state FROM bookings WHERE ref = ?", ref)
        return "-" if row is None else str(row["state"])


async def _put_back(reader: Reader, row: Row) -> list[Write]:
    return [Write("UPDATE stock SET available = available + 1 WHERE item = ?", (row["item"],))]


async def _nothing(reader: Reader, row: Row) -> list[Write]:
    return []


class FlightDesk(Desk):
    name = "flight"


class HotelDesk(Desk):
    name = "hotel"


class CarDesk(Desk):
    name = "car"


class ChargeDesk(Desk):
    name = "charge"


# ------------------------------------------------------------------------------- the saga

Builder = Callable[[SagaContext], Invocation]


def hold(desk: str) -> Builder:
    def build(ctx: SagaContext) -> Invocation:
        charge = desk == "charge"  # the charge desk holds an amount on the traveller's account
        item = ctx.input["account" if charge else desk]
        payload = {
            "trip": ctx.input["trip"],
            "item": item,
            "cents": ctx.input["total_cents"] * charge,
        }
        return Invocation(desk, "hold", payload)

    return build


def on(desk: str, action: str) -> Builder:
    return lambda ctx: Invocation(desk, action, {"trip": ctx.input["trip"]})


C, P, R = StepKind.COMPENSATABLE, StepKind.PIVOT, StepKind.RETRIABLE
DESKS = ("flight", "hotel", "car", "charge")

#: Hold the flight, the hotel and the car (each released if a later step fails); the charge is
#: the pivot: once it went through the trip goes ahead, and every hold is confirmed.
TRIP = SagaDefinition(
    "trip",
    (
        *(Step(d, C, hold(d), on(d, "release")) for d in DESKS[:3]),
        Step("charge", P, hold("charge"), on("charge", "release")),
        *(Step(f"{d}_ok", R, on(d, "confirm"), confirms=d) for d in DESKS),
    ),
)

STOCK = {"flight": {"LH400": 9}, "hotel": {"Ritz": 5}, "car": {"Mini": 1}}
DESK_TYPES: tuple[type[Desk], ...] = (FlightDesk, HotelDesk, CarDesk, ChargeDesk)


async def open_desk(desk: type[Desk], data_dir: Path) -> Desk:
    """Open one desk on its own SQLite database in ``data_dir`` (seeded when new)."""
    db = await open_database(f"sqlite:///{data_dir / desk.name}.db")
    accounts = {"ada": 1, "bob": 1}
    return await desk.open(db, STOCK.get(desk.name, accounts), max_cents=200_000)


TRIPS = (
    {"trip": "T1", "flight": "LH400", "hotel": "Ritz", "car": "Mini", "account": "ada"},
    {"trip": "T2", "flight": "LH400", "hotel": "Ritz", "car": "Mini", "account": "bob"},
)


async def book_trips(data_dir: Path, out: Callable[[str], None] = print) -> list[SagaResult]:
    """Run both trips on the logs in ``data_dir`` (continued if they exist)."""
    async with contextlib.AsyncExitStack() as stack:
        desks: dict[str, Desk] = {}
        for desk in DESK_TYPES:
            desks[desk.name] = await stack.enter_async_context(await open_desk(desk, data_dir))
        store = await stack.enter_async_context(await open_store(f"sqlite:///{data_dir}/log.db"))
        engine = SagaEngine(store, InProcessTransport(desks), [TRIP])
        await recover(engine)  # finish whatever a crash left unfinished, before new work
        results = []
        for trip in TRIPS:
            request = {**trip, "total_cents": 123_400}
            result = await engine.start("trip", trip["trip"], request, fingerprint(request))
            states = [f"{d} {await desks[d].state_of(f'{result.saga_id}:{d}')}" for d in DESKS]
            why = f" ({result.reason})" if result.reason else ""
            again = " [replayed]" if result.replayed else ""
            out(f"trip {result.saga_id} {result.status}{why}: {', '.join(states)}{again}")
            results.append(result)
        return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, help="keep the logs here (default: a temp dir)")
    args = parser.parse_args(argv)
    if args.data_dir is not None:
        args.data_dir.mkdir(parents=True, exist_ok=True)
        asyncio.run(book_trips(args.data_dir))
        return 0
    with tempfile.TemporaryDirectory(prefix="trips-") as tmp:
        asyncio.run(book_trips(Path(tmp)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
