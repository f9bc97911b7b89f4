"""The participant kit: how every service runs a command exactly once under optimistic locking.

A service declares its actions; the kit does the rest. Running one command::

    validate the envelope        service name, action name, key (messages.parse_key), key phase
                                 == action phase, payload size and JSON-ness   → else ``invalid``
    parse the payload            the action's ``parse``                         → else ``invalid``
    ┌► look the key up           same fingerprint → the stored reply, exactly
    │                            other fingerprint → ``conflict``
    │  decide (read phase)       the action's ``decide`` reads rows (with their ``version``)
    │                            outside any transaction and returns a :class:`Plan`: the reply
    │                            and the writes that carry it out
    │  apply (write phase)       ONE write transaction: insert the idempotency record (key,
    │                            fingerprint, reply), then each write, checking that it changed
    │                            exactly the rows it expects
    └─ ConflictError             a version moved (``UPDATE ... WHERE version = ?`` changed 0
                                 rows), or a unique key was taken (the same key committed by a
                                 concurrent duplicate, a tombstone racing an action): roll back,
                                 back off with full jitter, re-read, decide again

Why this is safe:

* Every write is a compare-and-swap on the version read in the read phase, or an insert under a
  primary key, so a plan decided on a stale snapshot never commits: no lost update, no oversell.
* The idempotency record commits in the same transaction as the business change, so "applied"
  and "recorded" cannot diverge, whatever crashes when. Refusals are recorded too: a repeat gets
  the same refusal even if the state has changed since.
* The record is inserted *first*: concurrent duplicates of one key collide on its primary key
  before they touch business rows (on PostgreSQL the second waits for the first, then fails and
  re-reads the stored reply), and no lock is ever taken on business rows while waiting for a key.
* A refusal that writes nothing is decided on a snapshot that existed during the call, so it is
  linearizable at its read.

:meth:`CommandRunner.apply` runs one already-decided command inside a transaction it is given and
does not commit: a later group commit can apply several commands in one local transaction.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from ordersaga.db import Database, Row, Tx
from ordersaga.errors import ConflictError
from ordersaga.messages import (
    Command,
    KeyState,
    Phase,
    Probe,
    Reply,
    ReplyStatus,
    canonical_json,
    fingerprint,
    parse_key,
)
from ordersaga.services.fields import BadPayload, mapping

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "Action",
    "CommandRunner",
    "KitStats",
    "LockingPolicy",
    "Plan",
    "Prepared",
    "Reader",
    "RunnerOptions",
    "Write",
]

MAX_PAYLOAD_BYTES = 64 * 1024

R = TypeVar("R")


class Reader(Protocol):
    """Where rows are read from: a :class:`Database` (snapshot read) or an open :class:`Tx`."""

    async def fetchone(self, sql: str, *params: Any) -> Row | None: ...

    async def fetchall(self, sql: str, *params: Any) -> list[Row]: ...


@dataclass(frozen=True, slots=True)
class Write:
    """One statement of a plan.

    ``expect`` is the number of rows the statement must change; any other count means the read
    phase saw a state that no longer holds, and the whole transaction rolls back with
    :class:`ConflictError`. ``None`` accepts any count (``INSERT ... ON CONFLICT DO NOTHING``).
    """

    sql: str
    params: tuple[Any, ...] = ()
    expect: int | None = 1


@dataclass(frozen=True, slots=True)
class Plan:
    """What a command decided: its reply (``ok`` or ``refused``) and the writes that apply it."""

    reply: Reply
    writes: tuple[Write, ...] = ()

    def __post_init__(self) -> None:
        if self.reply.status not in (ReplyStatus.OK, ReplyStatus.REFUSED):
            raise ValueError(f"a plan's reply must be ok or refused, not {self.reply.status}")


@dataclass(frozen=True, slots=True)
class Action(Generic[R]):
    """One command a service accepts.

    ``parse`` turns a payload into a request, raising :class:`BadPayload` for a malformed one
    (it must not touch the database). ``decide(reader, resource, request, now)`` reads the current
    state and returns a :class:`Plan`; it must only read, never write, and must be deterministic
    given what it reads, so it can be re-run after a conflict.
    """

    name: str
    phase: Phase
    parse: Callable[[Mapping[str, Any]], R]
    decide: Callable[[Reader, str, R, float], Awaitable[Plan]]


@dataclass(frozen=True, slots=True)
class LockingPolicy:
    """How often and how patiently a command re-reads after losing an optimistic-locking race.

    The delay after failed attempt ``n`` (1-based) is drawn uniformly from
    ``[0, min(max_backoff, initial_backoff * 2 ** (n - 1))]`` (full jitter), so writers that
    collided do not collide again in lockstep. After ``max_attempts`` the command gives up with
    :class:`ConflictError` (a StorageError: nothing was applied; the caller may retry the key).
    """

    max_attempts: int = 100
    initial_backoff: float = 0.0005
    max_backoff: float = 0.02

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not 0 < self.initial_backoff <= self.max_backoff:
            raise ValueError("need 0 < initial_backoff <= max_backoff")

    def backoff(self, attempt: int, rng: random.Random) -> float:
        cap = min(self.max_backoff, self.initial_backoff * 2.0 ** min(attempt - 1, 64))
        return rng.uniform(0.0, cap)


async def _no_pause() -> None:
    return None


@dataclass(frozen=True, slots=True)
class RunnerOptions:
    """What a service's runner is given rather than reaching for globals (tests inject all).

    ``pause`` runs between the read phase and the write transaction. It does nothing by default:
    the SQLite backend runs statements synchronously, so commands of one process then serialise
    without conflicts. Tests pass ``asyncio.sleep(0)``-like pauses to interleave in-process
    writers and force real version conflicts.
    """

    locking: LockingPolicy = field(default_factory=LockingPolicy)
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep
    rng: random.Random = field(default_factory=random.Random)
    clock: Callable[[], float] = time.time
    pause: Callable[[], Awaitable[None]] = _no_pause
    max_payload_bytes: int = MAX_PAYLOAD_BYTES


@dataclass(slots=True)
class KitStats:
    """Counters proving what happened: ``conflicts`` counts every lost race (rolled back)."""

    commands: int = 0
    commits: int = 0
    conflicts: int = 0
    replays: int = 0
    invalid: int = 0


@dataclass(frozen=True, slots=True)
class Prepared:
    """A command that passed validation: ready for the read and write phases."""

    key: str
    resource: str
    fingerprint: str
    action: Action[Any]
    request: Any


#: ``cancelled(reader, resource)``: the refusal a late action on a tombstoned resource gets.
Cancelled = Callable[[Reader, str], Awaitable[Reply | None]]


class CommandRunner:
    """Runs one service's commands: validation, idempotency, optimistic-locking retries, probes."""

    def __init__(
        self,
        db: Database,
        service: str,
        actions: Sequence[Action[Any]],
        cancelled: Cancelled,
        options: RunnerOptions,
    ) -> None:
        self._db = db
        self._service = service
        self._actions = {a.name: a for a in actions}
        self._cancelled = cancelled
        self._options = options
        self.stats = KitStats()

    async def handle(self, command: Command) -> Reply:
        """Apply ``command`` at most once (see the module docstring); never raises for bad input."""
        self.stats.commands += 1
        prepared = self.prepare(command)
        if isinstance(prepared, Reply):
            self.stats.invalid += 1
            return prepared
        return await self.run(prepared)

    def prepare(self, command: Command) -> Prepared | Reply:
        """Validate the envelope and parse the payload; an ``invalid`` reply when it is bad."""
        try:
            return self._prepare(command)
        except BadPayload as exc:
            return Reply.invalid(str(exc))

    def _prepare(self, command: Command) -> Prepared:
        if command.service != self._service:
            raise BadPayload(f"command for service {command.service!r} sent to {self._service!r}")
        action = self._actions.get(command.action) if isinstance(command.action, str) else None
        if action is None:
            raise BadPayload(f"unknown action {command.action!r} for service {self._service!r}")
        try:
            saga_id, step, phase = parse_key(command.key)
        except ValueError as exc:
            raise BadPayload(str(exc)) from None
        if phase is not action.phase:
            raise BadPayload(f"action {action.name!r} needs a {action.phase} key, not {phase}")
        payload = mapping(command.payload, "payload")
        plain = self._plain_json(payload)
        return Prepared(
            key=command.key,
            resource=f"{saga_id}:{step}",
            fingerprint=fingerprint({"action": action.name, "payload": plain}),
            action=action,
            request=action.parse(plain),
        )

    def _plain_json(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """The payload as plain JSON data (what HTTP would carry), refusing oversized ones."""
        try:
            text = canonical_json(dict(payload))
        except (TypeError, ValueError, RecursionError):
            raise BadPayload("payload is not JSON data") from None
        if len(text.encode()) > self._options.max_payload_bytes:
            raise BadPayload(f"payload is larger than {self._options.max_payload_bytes} bytes")
        data: dict[str, Any] = json.loads(text)
        return data

    async def run(self, cmd: Prepared) -> Reply:
        """The read → write loop, retried while optimistic locking loses races."""
        policy = self._options.locking
        for attempt in range(1, policy.max_attempts + 1):
            stored = await self._stored(self._db, cmd.key)
            if stored is not None:
                return self._replay(cmd, stored)
            plan = await cmd.action.decide(self._db, cmd.resource, cmd.request, self._now())
            await self._options.pause()
            try:
                async with self._db.transaction() as tx:
                    reply = await self.apply(tx, cmd, plan)
            except ConflictError:
                self.stats.conflicts += 1
                if attempt < policy.max_attempts:
                    await self._options.sleep(policy.backoff(attempt, self._options.rng))
                continue
            self.stats.commits += 1
            return reply
        raise ConflictError(
            f"{self._service}: {cmd.key}: still conflicting after {policy.max_attempts} attempts"
        )

    async def apply(self, tx: Tx, cmd: Prepared, plan: Plan) -> Reply:
        """Record ``cmd``'s reply and run its writes inside ``tx``, without committing.

        Raises :class:`ConflictError` when the key is already recorded or a write finds a state
        other than the one ``plan`` was decided on; the caller must roll ``tx`` back.
        """
        body = canonical_json(plan.reply.to_json())
        await tx.execute(
            "INSERT INTO idempotency (key, fingerprint, status, reply, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            cmd.key,
            cmd.fingerprint,
            plan.reply.status.value,
            body,
            self._now(),
        )
        for write in plan.writes:
            changed = await tx.execute(write.sql, *write.params)
            if write.expect is not None and changed != write.expect:
                raise ConflictError(
                    f"{self._service}: stale read: {write.sql.split(' SET ')[0]!r} changed"
                    f" {changed} rows, expected {write.expect}"
                )
        # Hand back exactly what a repeat will read from the idempotency table.
        return Reply.from_json(json.loads(body))

    async def probe(self, key: str) -> Probe:
        """What became of ``key``: applied, refused (also: cancelled by a tombstone), unknown."""
        try:
            saga_id, step, phase = parse_key(key)
        except ValueError:
            return Probe(KeyState.UNKNOWN)
        stored = await self._stored(self._db, key)
        if stored is not None:
            reply = Reply.from_json(json.loads(stored["reply"]))
            state = KeyState.APPLIED if reply.ok else KeyState.REFUSED
            return Probe(state, reply)
        if phase is Phase.ACTION:
            # A tombstone means the action can never apply: its late arrival will be refused.
            cancelled = await self._cancelled(self._db, f"{saga_id}:{step}")
            if cancelled is not None:
                return Probe(KeyState.REFUSED, cancelled)
        return Probe(KeyState.UNKNOWN)

    async def _stored(self, reader: Reader, key: str) -> Row | None:
        return await reader.fetchone(
            "SELECT fingerprint, status, reply FROM idempotency WHERE key = ?", key
        )

    def _replay(self, cmd: Prepared, stored: Row) -> Reply:
        if stored["fingerprint"] != cmd.fingerprint:
            return Reply(
                ReplyStatus.CONFLICT,
                {},
                f"idempotency key {cmd.key!r} was already used for a different request",
            )
        self.stats.replays += 1
        return Reply.from_json(json.loads(stored["reply"]))

    def _now(self) -> float:
        return float(self._options.clock())
