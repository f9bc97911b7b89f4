"""A confirmation by its shortcut comes to exactly what deciding it does.

A service's confirmation may declare a :class:`~ordersaga.participant.plan.Shortcut`: the kit
records the usual reply first, then confirms with one guarded ``UPDATE`` instead of reading the
row and writing it back; where the usual outcome does not hold it decides as usual and corrects
the record. These tests run the same commands on a service that takes its shortcuts (on each
backend, unpipelined, where the kit takes them) and on one whose shortcuts are removed, and
compare every reply and every row — the records, the resources and the rows the effects move.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ordersaga.clock import FakeClock
from ordersaga.db import open_database
from ordersaga.participant.kit import RunnerOptions
from ordersaga.participant.service import KitService
from ordersaga.protocol.messages import Command
from ordersaga.services.inventory import InventoryService
from ordersaga.services.payment import PaymentService
from ordersaga.services.shipping import ShippingService
from tests.integration.services.helpers import (
    INVENTORY,
    PAYMENT,
    SHIPPING,
    TODAY,
    Case,
    dump,
)

_SERVICES: dict[str, tuple[Any, Any, dict[str, Any]]] = {
    "inventory": (InventoryService, INVENTORY, {}),
    "shipping": (ShippingService, SHIPPING, {}),
    "payment": (PaymentService, PAYMENT, {"today": lambda: TODAY}),
}
#: The tables each service's effects move, besides its resources and records.
_EFFECTS = {"inventory": ("items",), "shipping": (), "payment": ("accounts",)}


async def _open(case: Case, url: str, *, shortcuts: bool) -> KitService:
    cls, config, extra = _SERVICES[case.name]
    db = await open_database(url, durable=False, pool_size=4, pipelined=False)
    options = RunnerOptions(clock=FakeClock(5_000.0))
    service: KitService = await cls.open(db, config, options=options, **extra)
    if not shortcuts:
        envelope = service.runner._envelope
        envelope._actions = {
            name: (dataclasses.replace(action, shortcut=None), head)
            for name, (action, head) in envelope._actions.items()
        }
    return service


def _commands(case: Case) -> list[Command]:
    """Every way a confirmation can go, repeats included."""

    def confirm(saga: str, order: str | None) -> Command:
        command = case.confirm(saga)
        return dataclasses.replace(command, payload={**command.payload, "order_id": order})

    return [
        case.action("s1"),
        case.confirm("s1"),  # the usual outcome: by the shortcut
        case.confirm("s1"),  # a repeat: replayed
        confirm("s1", None),  # the same key, another request: conflict
        case.confirm("s2"),  # no resource yet: refused, the record corrected
        case.action("s2"),
        case.confirm("s2"),  # a repeat of the refusal: still refused, the resource untouched
        case.action("s3"),
        confirm("s3", "someone else"),  # another order's resource: refused
        case.action("s4"),
        case.compensate("s4"),
        case.confirm("s4"),  # cancelled: an illegal transition, refused
        case.action("s5"),
        confirm("s5", None),  # no order given: confirmed by the shortcut
        confirm("s5", None),
    ]


async def test_a_confirmation_by_its_shortcut_is_the_decided_one(
    case: Case, db_url: str, tmp_path: Path
) -> None:
    short = await _open(case, db_url, shortcuts=True)
    decided = await _open(case, f"sqlite:///{tmp_path / 'decided.db'}", shortcuts=False)
    try:
        confirming, _ = short.runner._envelope._actions[case.confirm("s1").action]
        assert confirming.shortcut is not None
        for command in _commands(case):
            by_shortcut, by_decision = await short.handle(command), await decided.handle(command)
            assert by_shortcut == by_decision, command
            assert by_shortcut.body_text() == by_decision.body_text()
        tables = (*case.tables, *_EFFECTS[case.name])
        assert await dump(short.db, tables) == await dump(decided.db, tables)
        assert short.stats == decided.stats
    finally:
        await short.close()
        await decided.close()
