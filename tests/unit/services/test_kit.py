"""The kit's pure parts and its retry loop, against a fake database (no real waiting)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import MappingProxyType
from typing import Any

import pytest

from ordersaga.clock import FakeClock
from ordersaga.db import Database, Row, Tx
from ordersaga.errors import ConflictError, StorageError
from ordersaga.participant.kit import (
    Action,
    CommandRunner,
    LockingPolicy,
    Plan,
    Reader,
    RunnerOptions,
    Write,
)
from ordersaga.participant.records import encode
from ordersaga.protocol.messages import (
    Command,
    Phase,
    Reply,
    ReplyStatus,
    canonical_json,
    parse_key,
)


class FakeTx(Tx):
    def __init__(self, db: FakeDb) -> None:
        self.db = db

    async def execute(self, sql: str, *params: Any) -> int:
        self.db.statements.append(sql)
        if sql.startswith("UPDATE") and self.db.stale_updates > 0:
            self.db.stale_updates -= 1
            return 0  # a concurrent writer moved the version
        return 1

    async def fetchone(self, sql: str, *params: Any) -> Row | None:
        return None

    async def fetchall(self, sql: str, *params: Any) -> list[Row]:
        return []


class FakeDb(Database):
    """Knows no keys; its UPDATEs find a moved version ``stale_updates`` times."""

    dialect = "sqlite"
    url = "fake://"

    def __init__(self, stale_updates: int) -> None:
        self.stale_updates = stale_updates
        self.statements: list[str] = []
        self.commits = 0

    async def fetchone(self, sql: str, *params: Any) -> Row | None:
        return None

    async def fetchall(self, sql: str, *params: Any) -> list[Row]:
        return []

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        yield FakeTx(self)
        self.commits += 1

    async def executescript(self, sql: str) -> None:
        return None

    async def close(self) -> None:
        return None


async def _decide(reader: Reader, resource: str, request: Any, now: float) -> Plan:
    return Plan(Reply(ReplyStatus.OK, {"n": request}), (Write("UPDATE t SET v = 1"),))


ACTION = Action("bump", Phase.ACTION, lambda payload: payload.get("n"), _decide)


async def _no_pause() -> None:
    return None


def _runner(
    db: FakeDb,
    policy: LockingPolicy,
    slept: list[float],
    *,
    pause: bool = False,
    max_payload_bytes: int = 64 * 1024,
) -> CommandRunner:
    clock = FakeClock(5.0)
    clock.sleeps = slept  # the backoffs it was asked for (it waits for none)

    async def cancelled(reader: Reader, resource: str) -> Reply | None:
        return None

    options = RunnerOptions(
        locking=policy,
        rng=random.Random(1),
        clock=clock,
        pause=_no_pause if pause else None,
        max_payload_bytes=max_payload_bytes,
    )
    return CommandRunner(db, "svc", [ACTION], cancelled, options)


COMMAND = Command("svc", "bump", "saga:step:action", {"n": 1})


async def test_conflicts_are_retried_with_jittered_backoff() -> None:
    db, slept = FakeDb(stale_updates=3), list[float]()
    runner = _runner(
        db, LockingPolicy(max_attempts=10, initial_backoff=0.01, max_backoff=0.02), slept
    )
    reply = await runner.handle(COMMAND)
    assert reply == Reply(ReplyStatus.OK, {"n": 1})
    assert (runner.stats.conflicts, runner.stats.commits, db.commits) == (3, 1, 1)
    assert len(slept) == 3
    caps = [0.01, 0.02, 0.02]
    assert all(0 <= s <= cap for s, cap in zip(slept, caps, strict=True))
    # The idempotency record is written first, in the same transaction as the update.
    assert db.statements[-2].startswith("INSERT INTO idempotency")
    assert db.statements[-1] == "UPDATE t SET v = 1"


@pytest.mark.parametrize("pause", [False, True])
async def test_a_lone_command_runs_in_one_plain_transaction(pause: bool) -> None:
    """Savepoints only after a command of a batch failed: a batch of one, decided in its batch
    or before it (``pause``), is its record and its writes, nothing else."""
    db = FakeDb(stale_updates=0)
    runner = _runner(db, LockingPolicy(), [], pause=pause)
    assert (await runner.handle(COMMAND)).ok
    assert [sql.split(" (")[0] for sql in db.statements] == [
        "INSERT INTO idempotency",
        "UPDATE t SET v = 1",
    ]
    assert (runner.stats.commits, runner.stats.applied, db.commits) == (1, 1, 1)


async def test_a_batch_decided_in_its_transaction_runs_without_savepoints() -> None:
    """Concurrent commands share one plain transaction and one commit while none fails."""
    db = FakeDb(stale_updates=0)
    runner = _runner(db, LockingPolicy(), [])
    commands = [Command("svc", "bump", f"saga{i}:step:action", {"n": i}) for i in range(3)]
    replies = await asyncio.gather(*(runner.handle(command) for command in commands))
    assert [reply.body for reply in replies] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert not any("SAVEPOINT" in sql for sql in db.statements)
    assert len(db.statements) == 6 and db.commits == 1


async def test_gives_up_after_max_attempts_with_a_conflict_error() -> None:
    db, slept = FakeDb(stale_updates=100), list[float]()
    runner = _runner(db, LockingPolicy(max_attempts=4), slept)
    message = r"^svc: saga:step:action: still conflicting after 4 attempts$"
    with pytest.raises(ConflictError, match=message):
        await runner.handle(COMMAND)
    assert (runner.stats.conflicts, db.commits, len(slept)) == (4, 0, 3)


def test_backoff_is_full_jitter_under_a_growing_cap() -> None:
    policy = LockingPolicy(initial_backoff=0.001, max_backoff=0.05)
    rng = random.Random(7)
    for attempt, cap in [(1, 0.001), (2, 0.002), (3, 0.004), (7, 0.05), (500, 0.05)]:
        draws = [policy.backoff(attempt, rng) for _ in range(200)]
        assert all(0 <= d <= cap for d in draws)
        assert max(draws) > cap / 2  # spread over the whole range, not fixed


@pytest.mark.parametrize(
    "kwargs",
    [{"max_attempts": 0}, {"initial_backoff": 0}, {"initial_backoff": 1, "max_backoff": 0.5}],
)
def test_locking_policy_validates_itself(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        LockingPolicy(**kwargs)


def test_a_plan_only_carries_definite_business_answers() -> None:
    with pytest.raises(ValueError):
        Plan(Reply.invalid("no"))
    with pytest.raises(ValueError):
        Plan(Reply(ReplyStatus.CONFLICT))


def test_prepare_names_the_resource_and_fingerprints_the_request() -> None:
    runner = _runner(FakeDb(0), LockingPolicy(), [])
    prepared = runner.prepare(Command("svc", "bump", "a:b:c:step:action", {"n": 2}))
    assert not isinstance(prepared, Reply)
    assert prepared.resource == "a:b:c:step"
    assert prepared.request == 2
    assert prepared.fingerprint == Command("svc", "bump", "k", {"n": 2}).fingerprint()
    other = runner.prepare(Command("svc", "bump", "a:b:c:step:action", {"n": 3}))
    assert not isinstance(other, Reply) and other.fingerprint != prepared.fingerprint


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("\ud800", "payload holds a lone surrogate (not valid Unicode)"),
        ("caf\u00e9 \udfff", "payload holds a lone surrogate (not valid Unicode)"),
        ({1, 2}, "payload is not JSON data"),
        (b"bytes", "payload is not JSON data"),
    ],
)
async def test_a_payload_that_could_not_be_stored_is_invalid_with_its_reason(
    value: Any, reason: str
) -> None:
    db = FakeDb(stale_updates=0)
    runner = _runner(db, LockingPolicy(), [])
    reply = await runner.handle(Command("svc", "bump", "saga:step:action", {"n": value}))
    assert reply == Reply.invalid(reason)
    assert (runner.stats.invalid, db.statements) == (1, [])


async def test_a_payload_with_any_valid_unicode_is_accepted() -> None:
    runner = _runner(FakeDb(stale_updates=0), LockingPolicy(), [])
    reply = await runner.handle(
        Command("svc", "bump", "saga:step:action", {"n": "caf\u00e9 \U0001f600"})
    )
    assert reply == Reply(ReplyStatus.OK, {"n": "caf\u00e9 \U0001f600"})


@pytest.mark.parametrize(("char", "fits"), [("x", 12), ("\u00e9", 6)])
async def test_the_payload_limit_counts_utf8_bytes_and_admits_exactly_the_limit(
    char: str, fits: int
) -> None:
    """``{"n":"..."}`` is 8 bytes plus its text: a 20-byte limit admits 12 ASCII characters or
    6 two-byte ones, and refuses one more."""
    runner = _runner(FakeDb(stale_updates=0), LockingPolicy(), [], max_payload_bytes=20)
    at_limit = Command("svc", "bump", "s1:step:action", {"n": char * fits})
    over = Command("svc", "bump", "s2:step:action", {"n": char * (fits + 1)})
    assert (await runner.handle(at_limit)).ok
    assert await runner.handle(over) == Reply.invalid("payload is larger than 20 bytes")
    assert (runner.stats.commands, runner.stats.invalid, runner.stats.applied) == (2, 1, 1)


BAD_ENVELOPES = [
    (
        Command("elsewhere", "bump", "s:x:action", {}),
        "command for service 'elsewhere' sent to 'svc'",
    ),
    (Command("svc", "explode", "s:x:action", {}), "unknown action 'explode' for service 'svc'"),
    (Command("svc", ["bump"], "s:x:action", {}), "unknown action ['bump'] for service 'svc'"),  # type: ignore[arg-type]
    (Command("svc", "bump", "s1", {}), "idempotency key must look like <saga id>:<step>:<phase>"),
    (
        Command("svc", "bump", "s:x:compensate", {}),
        "action 'bump' needs a action key, not compensate",
    ),
    (Command("svc", "bump", "s:x:action", ["a"]), "payload must be an object, got list"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(("command", "reason"), BAD_ENVELOPES)
async def test_a_bad_envelope_is_invalid_with_a_reason_naming_what_is_wrong(
    command: Command, reason: str
) -> None:
    db = FakeDb(stale_updates=0)
    runner = _runner(db, LockingPolicy(), [])
    assert await runner.handle(command) == Reply.invalid(reason)
    assert db.statements == []


class _Key(str):
    """A key of a str subclass: checked as any other key."""


@pytest.mark.parametrize(
    "key",
    [
        "s:x:action",
        "a:b:c:step:action",
        _Key("s:x:action"),
        "s:x:compensate",
        "s:x:ACTION",
        "s:x:",
        "s:x:action:",
        ":x:action",
        "s::action",
        "::action",
        "x:action",
        "action",
        "",
        "s x:y:action",
        "s\tx:y:action",
        "s:y:action\n",
        "s" * 503 + ":x:action",
        "s" * 504 + ":x:action",
        123,
        None,
    ],
)
def test_a_key_is_checked_as_parse_key_checks_it_then_for_the_action_phase(key: Any) -> None:
    """The envelope tells the usual key without parse_key; every key gets parse_key's verdict:
    its reason when malformed, the phase's when of another phase, else its resource."""
    runner = _runner(FakeDb(0), LockingPolicy(), [])
    prepared = runner.prepare(Command("svc", "bump", key, {"n": 1}))
    try:
        saga_id, step, phase = parse_key(key)
    except ValueError as exc:
        assert prepared == Reply.invalid(str(exc))
        return
    if phase is not Phase.ACTION:
        assert prepared == Reply.invalid(f"action 'bump' needs a action key, not {phase}")
    else:
        assert not isinstance(prepared, Reply)
        assert (prepared.key, prepared.resource) == (key, f"{saga_id}:{step}")


@pytest.mark.parametrize(
    ("sent_at", "expired"),
    [(5.0 - 3600.0, False), (5.0 - 3600.5, True), (float("nan"), True), (1e9, False)],
)
def test_a_command_past_the_age_limit_is_expired_and_one_within_it_is_not(
    sent_at: float, expired: bool
) -> None:
    """The limit admits exactly its age (the clock reads 5.0); an age that is not a number is
    past it; a command from the future is taken as sent now."""
    runner = _runner(FakeDb(0), LockingPolicy(), [])
    prepared = runner.prepare(Command("svc", "bump", "s:x:action", {"n": 1}, sent_at))
    status = prepared.status if isinstance(prepared, Reply) else None
    assert status is (ReplyStatus.EXPIRED if expired else None)


async def test_any_mapping_payload_is_read_as_its_json() -> None:
    """A payload that is a mapping but not a dict is parsed from its JSON, and fingerprinted as
    the equal dict would be (a repeat from HTTP, a plain dict, is the same request)."""
    runner = _runner(FakeDb(stale_updates=0), LockingPolicy(), [])
    as_dict = runner.prepare(Command("svc", "bump", "s:x:action", {"n": [4]}))
    view = MappingProxyType({"n": (4,)})  # a tuple: JSON carries it as an array
    as_view = runner.prepare(Command("svc", "bump", "s:x:action", view))
    assert not isinstance(as_dict, Reply) and not isinstance(as_view, Reply)
    assert (as_view.request, as_view.fingerprint) == ([4], as_dict.fingerprint)


async def test_the_fingerprint_covers_the_action_and_only_the_fingerprinted_view() -> None:
    """The same key and payload for another action is another request; a field left out of
    the fingerprint (a card number) does not change it, one kept in does."""
    other = Action("poke", Phase.ACTION, lambda payload: payload.get("n"), _decide)
    secret = Action(
        "pay",
        Phase.ACTION,
        lambda payload: payload.get("n"),
        _decide,
        fingerprinted=lambda payload: {k: v for k, v in payload.items() if k != "card"},
    )

    async def cancelled(reader: Reader, resource: str) -> Reply | None:
        return None

    runner = CommandRunner(FakeDb(0), "svc", [ACTION, other, secret], cancelled, RunnerOptions())

    def fingerprint(action: str, payload: dict[str, Any]) -> str:
        prepared = runner.prepare(Command("svc", action, "s:x:action", payload))
        assert not isinstance(prepared, Reply)
        return prepared.fingerprint

    assert fingerprint("bump", {"n": 1}) == Command("svc", "bump", "k", {"n": 1}).fingerprint()
    assert fingerprint("poke", {"n": 1}) == Command("svc", "poke", "k", {"n": 1}).fingerprint()
    assert fingerprint("bump", {"n": 1}) != fingerprint("poke", {"n": 1})
    card = fingerprint("pay", {"n": 1, "card": "4111"})
    assert card == fingerprint("pay", {"n": 1, "card": "5500"})
    assert card == Command("svc", "pay", "k", {"n": 1}).fingerprint()
    assert card != fingerprint("pay", {"n": 2, "card": "4111"})


async def test_expired_and_invalid_commands_are_counted_one_by_one() -> None:
    db = FakeDb(stale_updates=0)
    runner = _runner(db, LockingPolicy(), [])
    late = [Command("svc", "bump", f"s{i}:x:action", {"n": i}, -1e9) for i in range(2)]
    bad = [Command("svc", "explode", f"s{i}:x:action", {}) for i in range(3)]
    replies = [await runner.handle(command) for command in [*late, *bad, COMMAND]]
    statuses = [reply.status for reply in replies]
    assert statuses == [ReplyStatus.EXPIRED] * 2 + [ReplyStatus.INVALID] * 3 + [ReplyStatus.OK]
    stats = runner.stats
    assert (stats.commands, stats.expired, stats.invalid, stats.applied) == (6, 2, 3, 1)


async def test_a_closed_runner_refuses_commands_naming_its_service() -> None:
    runner = _runner(FakeDb(stale_updates=0), LockingPolicy(), [])
    await runner.close()
    with pytest.raises(StorageError, match=r"^the svc service is closed$"):
        await runner.handle(COMMAND)


@pytest.mark.parametrize("status", list(ReplyStatus))
def test_a_record_holds_its_status_as_plain_text_and_the_whole_reply_as_canonical_json(
    status: ReplyStatus,
) -> None:
    reply = Reply(status, {"b": [1, {"z": None, "a": "\u00e9"}], "a": 2}, "why \u00e9")
    text, body_json, record = encode(reply)
    assert (type(text), text) == (str, status.value)
    assert body_json == canonical_json(dict(reply.body))
    assert record == canonical_json(reply.to_json())
    assert encode(Reply(status))[2] == canonical_json(Reply(status).to_json())
