"""The shared resource rules (participant/lifecycle.py) that a service's normal traffic rarely or
never reaches: a confirmation naming another order, and the answers a rule gives when it is
decided again on a resource already past it (a key whose record is gone, a defensive branch)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from ordersaga.db import Row
from ordersaga.participant.kit import Reader, Write
from ordersaga.participant.lifecycle import Lifecycle
from ordersaga.participant.service import KitService
from ordersaga.protocol.messages import Reply, ReplyStatus
from ordersaga.services import inventory, payment, shipping
from tests.integration.services.helpers import Case, dump

LIFECYCLES: dict[str, Lifecycle] = {
    "inventory": inventory.LIFECYCLE,
    "shipping": shipping.LIFECYCLE,
    "payment": payment.LIFECYCLE,
}


def _ref(case: Case, saga: str) -> str:
    return case.action(saga).key.rsplit(":", 1)[0]


async def test_a_confirmation_naming_another_order_is_refused_and_changes_nothing(
    case: Case, service: KitService
) -> None:
    assert (await service.handle(case.action("s1"))).ok
    before = await dump(service.db, case.tables[:-1])  # the business tables
    command = case.confirm("s1")
    wrong = dataclasses.replace(command, payload={**command.payload, "order_id": "o-9"})
    reply = await service.handle(wrong)
    ref = _ref(case, "s1")
    assert reply == Reply.refused(f"{case.noun} {ref!r} belongs to order 's1', not 'o-9'")
    assert await dump(service.db, case.tables[:-1]) == before
    # The resource is still waiting for its own order's confirmation (or compensation).
    assert (await service.handle(case.compensate("s1"))).ok


async def test_compensation_replies_name_the_state_and_the_orders(
    case: Case, service: KitService
) -> None:
    lifecycle = LIFECYCLES[case.name]
    # Before its action: a tombstone, and the reply says the resource is cancelled.
    assert await service.handle(case.compensate("s0")) == Reply(
        ReplyStatus.OK, {"state": lifecycle.cancelled}
    )
    assert (await service.handle(case.action("s1"))).ok
    command = case.compensate("s1")
    wrong = dataclasses.replace(command, payload={**command.payload, "order_id": "o-9"})
    ref = _ref(case, "s1")
    assert await service.handle(wrong) == Reply.refused(
        f"{case.noun} {ref!r} belongs to order 's1', not 'o-9'"
    )


async def test_deciding_again_on_a_finished_resource(case: Case, service: KitService) -> None:
    """What a rule answers on a resource already past it, decided afresh (as for a key whose
    idempotency record is gone): a confirmation of a confirmed resource is the same success, an
    action on an existing resource is refused naming it and its state."""
    lifecycle = LIFECYCLES[case.name]
    assert (await service.handle(case.action("s1"))).ok
    confirmed = await service.handle(case.confirm("s1"))
    assert confirmed == Reply(ReplyStatus.OK, {"state": lifecycle.confirmed})
    ref = _ref(case, "s1")

    async def no_effects(reader: Reader, row: Row) -> Sequence[Write]:
        raise AssertionError("a confirmed resource has no effects left to apply")

    again = await lifecycle.confirm(service.db, ref, "s1", 9.0, no_effects)
    assert (again.reply, again.writes) == (confirmed, ())
    row = await lifecycle.load(service.db, ref)
    assert row is not None
    refused = lifecycle.refuse_existing(row)
    assert refused.reply == Reply.refused(
        f"{lifecycle.noun} {ref!r} already exists ({lifecycle.confirmed})"
    )
    assert refused.writes == ()


async def test_a_transitions_effects_read_through_the_same_reader(
    case: Case, service: KitService
) -> None:
    """Effects may read (the stock of an item, an account): they get the decision's reader, so
    they see what the decision saw (inside the batch's transaction, the commands before it)."""
    lifecycle = LIFECYCLES[case.name]
    assert (await service.handle(case.action("s1"))).ok
    ref = _ref(case, "s1")
    seen: list[tuple[Reader, str]] = []

    async def effects(reader: Reader, row: Row) -> Sequence[Write]:
        seen.append((reader, row["ref"]))
        count = await reader.fetchone(f"SELECT COUNT(*) AS n FROM {lifecycle.table}")
        assert count is not None and count["n"] == 1
        return ()

    async with service.db.transaction() as tx:
        confirm = await lifecycle.confirm(tx, ref, "s1", 9.0, effects)
        compensate = await lifecycle.compensate(tx, ref, "s1", 9.0, effects)
    assert seen == [(tx, ref), (tx, ref)]
    assert confirm.reply == Reply(ReplyStatus.OK, {"state": lifecycle.confirmed})
    assert compensate.reply == Reply(ReplyStatus.OK, {"state": lifecycle.cancelled})


async def test_a_decision_reads_the_life_cycles_columns_and_its_effects(
    case: Case, service: KitService
) -> None:
    """The row a compensation or confirmation decides on (and its effects get) holds the columns
    the life cycle reads, the ref it looked up and those the service names for its effects;
    ``load`` adds the tombstone flag; a life cycle naming no columns reads the whole row."""
    lifecycle = LIFECYCLES[case.name]
    assert lifecycle.columns is not None
    assert (await service.handle(case.action("s1"))).ok
    ref = _ref(case, "s1")
    whole = await service.db.fetchone(f"SELECT * FROM {lifecycle.table} WHERE ref = ?", ref)
    assert whole is not None
    seen: list[Row] = []

    async def effects(reader: Reader, row: Row) -> Sequence[Write]:
        seen.append(row)
        return ()

    for every in (lifecycle, dataclasses.replace(lifecycle, columns=None)):
        async with service.db.transaction() as tx:
            await every.confirm(tx, ref, "s1", 9.0, effects)
            await every.compensate(tx, ref, "s1", 9.0, effects)
            loaded = await every.load(tx, ref)
    decided, decided_again, everything, everything_again = seen
    assert set(decided) == {"ref", "order_id", "state", "version", *lifecycle.columns}
    assert decided == decided_again == {name: whole[name] for name in decided}
    assert everything == everything_again == loaded == whole  # columns=None: SELECT *
    row = await lifecycle.load(service.db, ref)
    assert row == {name: whole[name] for name in row}
    assert set(row) == {"ref", "order_id", "state", "tombstone", "version", *lifecycle.columns}
