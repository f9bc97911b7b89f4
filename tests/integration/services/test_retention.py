"""Message age and retention in the services, on SQLite and PostgreSQL.

A delivery older than the message-age limit is refused as ``expired`` and changes nothing; one
younger still finds its record. Pruning a finished saga's rows carries their totals forward.
"""

from __future__ import annotations

import dataclasses
import time

from ordersaga.participant.retention import carried_totals, prune_resources
from ordersaga.participant.service import KitService
from ordersaga.protocol.messages import MAX_MESSAGE_AGE, Command, KeyState, ReplyStatus
from ordersaga.services.retention import CAPTURED, RETENTION, SOLD
from tests.integration.services.helpers import Case, dump


def sent(command: Command, age: float) -> Command:
    """``command`` as first sent ``age`` seconds ago."""
    return dataclasses.replace(command, sent_at=time.time() - age)


async def test_a_late_duplicate_past_the_limit_is_refused_and_changes_nothing(
    case: Case, service: KitService
) -> None:
    first = await service.handle(sent(case.action("s1"), 5))
    assert first.ok, first
    before = await dump(service.db, (*case.tables, "idempotency"))

    late = await service.handle(sent(case.action("s1"), MAX_MESSAGE_AGE + 5))
    assert late.status is ReplyStatus.EXPIRED
    assert late.reason is not None and late.reason.startswith("expired")
    assert not late.status.definite  # it says nothing about what earlier deliveries did
    assert await dump(service.db, (*case.tables, "idempotency")) == before
    assert service.stats.expired == 1

    younger = await service.handle(sent(case.action("s1"), MAX_MESSAGE_AGE - 60))
    assert younger == first  # found its record: replayed
    assert await dump(service.db, (*case.tables, "idempotency")) == before
    probe = await service.probe(case.action("s1").key)
    assert probe.state is KeyState.APPLIED


async def test_a_late_action_past_the_limit_never_lands_after_a_tombstone(
    case: Case, service: KitService
) -> None:
    assert (await service.handle(sent(case.compensate("s2"), 1))).ok  # a tombstone
    before = await dump(service.db, (*case.tables, "idempotency"))
    late = await service.handle(sent(case.action("s2"), MAX_MESSAGE_AGE + 1))
    assert late.status is ReplyStatus.EXPIRED
    assert await dump(service.db, (*case.tables, "idempotency")) == before
    # A command without a stamp is taken as sent on arrival: the tombstone refuses it.
    assert (await service.handle(case.action("s2"))).status is ReplyStatus.REFUSED


async def test_pruning_a_finished_resource_carries_its_totals_forward(
    case: Case, service: KitService
) -> None:
    for saga in ("s1", "s2", "s3"):
        assert (await service.handle(case.action(saga))).ok
    assert (await service.handle(case.confirm("s1"))).ok
    assert (await service.handle(case.compensate("s2"))).ok
    assert (await service.handle(case.compensate("s4"))).ok  # a tombstone
    spec = RETENTION[case.name]
    step = case.action("s1").key.rsplit(":", 2)[1]
    refs = [f"{saga}:{step}" for saga in ("s1", "s2", "s4")]

    assert (await prune_resources(service.db, spec, refs, time.time() - 3600)).resources == 0
    dry = await prune_resources(service.db, spec, refs, time.time() + 1, dry_run=True)
    assert (dry.resources, dry.records) == (3, 5)
    pruned = await prune_resources(service.db, spec, refs, time.time() + 1)
    assert (pruned.resources, pruned.records) == (3, 5)
    assert (await prune_resources(service.db, spec, refs, time.time() + 1)).resources == 0

    rows = await service.db.fetchall(f"SELECT ref FROM {spec.table}")
    assert [row["ref"] for row in rows] == [f"s3:{step}"]  # s3 is still open
    keys = await service.db.fetchall("SELECT key FROM idempotency")
    assert [row["key"] for row in keys] == [case.action("s3").key]
    totals = await carried_totals(service.db)
    if case.name == "inventory":
        assert totals == {(SOLD, "A"): 2}  # s1's committed units; s2 was released
    elif case.name == "payment":
        assert totals == {(CAPTURED, "1"): 1_000}
    else:
        assert totals == {}
