"""What a participant's action declares and decides: the inert values the kit runs.

An :class:`Action` names a command, its phase, how to parse its payload and how to ``decide``
it; deciding reads through a :class:`Reader` and returns a :class:`Plan` — the reply and the
:class:`Write` statements that carry it out. Nothing here touches a database: the command
runner (:mod:`ordersaga.participant.kit`) does, in one transaction per batch.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

from ordersaga.db import Row, Tx
from ordersaga.protocol.messages import Phase, Reply, ReplyStatus
from ordersaga.slots import slot_setter

__all__ = [
    "Action",
    "Cancelled",
    "Existing",
    "Footprint",
    "Plan",
    "Prepared",
    "Reader",
    "RowKey",
    "Shortcut",
    "Write",
]

R = TypeVar("R")


class Reader(Protocol):
    """Where rows are read from: a :class:`Database` (snapshot read) or an open :class:`Tx`."""

    async def fetchone(self, sql: str, *params: Any) -> Row | None: ...

    async def fetchall(self, sql: str, *params: Any) -> list[Row]: ...


class Write(NamedTuple):
    """One statement of a plan (an immutable value; a named tuple because plans make many).

    ``expect`` is the number of rows the statement must change; any other count means the read
    phase saw a state that no longer holds, and the whole transaction rolls back with
    :class:`ConflictError`. ``None`` accepts any count (``INSERT ... ON CONFLICT DO NOTHING``).
    """

    sql: str
    params: tuple[Any, ...] = ()
    expect: int | None = 1


#: A row a command reads or writes: its table and its primary key (``("items", "SKU-1")``).
RowKey = tuple[str, Hashable]


class Footprint(NamedTuple):
    """The rows a command may touch, known before it is decided (see :mod:`.waves`).

    ``reads`` must hold every row its decision (and the kit's look-up of an existing resource,
    for an action) may read, ``writes`` every row its plan may write; ``writes_any`` names the
    tables any of whose rows it may write (rows it learns only by reading, e.g. the items of a
    reservation being committed). Over-approximating is always safe; leaving a row out is not.
    """

    reads: frozenset[RowKey]
    writes: frozenset[RowKey]
    writes_any: frozenset[str] = frozenset()


#: The statuses a plan's reply may have.
_DECIDED = (ReplyStatus.OK, ReplyStatus.REFUSED)


@dataclass(frozen=True, slots=True, init=False)
class Plan:
    """What a command decided: its reply (``ok`` or ``refused``) and the writes that apply it.

    ``claim`` (an action's plan) is the INSERT of the resource the action creates, under the
    resource's primary key, decided without looking for an existing row: the kit runs it before
    ``writes``, and if a row is there already (a tombstone, or a row of another key) the command
    is answered with the refusal of :data:`Existing` instead, and nothing of the plan is applied.
    """

    reply: Reply
    writes: tuple[Write, ...] = ()
    claim: Write | None = None

    def __init__(
        self, reply: Reply, writes: tuple[Write, ...] = (), claim: Write | None = None
    ) -> None:
        # What the generated __init__ does, checked first, with each field set through its slot
        # (a plan per command: the generic frozen __init__ costs twice as much).
        if reply.status not in _DECIDED:
            raise ValueError(f"a plan's reply must be ok or refused, not {reply.status}")
        _set_reply(self, reply)
        _set_writes(self, writes)
        _set_claim(self, claim)


_set_reply = slot_setter(Plan, "reply")
_set_writes = slot_setter(Plan, "writes")
_set_claim = slot_setter(Plan, "claim")


@dataclass(frozen=True, slots=True)
class Shortcut(Generic[R]):
    """A command's usual outcome, applied without reading first (see :class:`Action`).

    ``reply()`` is the usual reply. ``apply(tx, resource, request, now)`` makes the usual change
    only where the usual outcome holds — a guarded write, e.g. ``UPDATE ... WHERE ref = ? AND
    state = 'held'`` — and gives the rest of the usual plan's writes, or ``None`` when it changed
    nothing. Together they must come to exactly what ``decide`` would: the same reply, the same
    rows.
    """

    reply: Callable[[], Reply]
    apply: Callable[[Tx, str, R, float], Awaitable[Sequence[Write] | None]]


@dataclass(frozen=True, slots=True)
class Action(Generic[R]):
    """One command a service accepts.

    ``parse`` turns a payload into a request, raising :class:`BadPayload` for a malformed one
    (it must not touch the database). ``decide(reader, resource, request, now)`` reads the current
    state and returns a :class:`Plan`; it must only read, never write, and must be deterministic
    given what it reads, so it can be re-run after a conflict.

    ``fingerprinted`` (optional) gives the part of a payload its idempotency fingerprint covers,
    when a field must not be stored even hashed (a card number: few unknown digits, so a plain
    hash of it could be brute-forced); by default the whole payload.

    ``footprint`` (optional) gives the rows a command may read and write, from its resource and
    request (:class:`Footprint`): on PostgreSQL the reads of commands that cannot see each
    other's writes then go to the server together (:mod:`.waves`). Without one, a command's
    reads wait for every command before it in its batch, and every read after it waits for it.

    ``shortcut`` (optional) applies the command's usual outcome with a guarded write instead of a
    read and a compare-and-swap (:class:`Shortcut`; a confirmation's state change). The kit
    takes it where it decides a command inside its batch, one statement after another: it
    records the usual reply (an INSERT that finds a repeat before anything is written), then
    runs the shortcut; where the usual outcome does not hold, it decides the command as usual
    and corrects the recorded reply. PostgreSQL's pipelined waves decide as usual.
    """

    name: str
    phase: Phase
    parse: Callable[[Mapping[str, Any]], R]
    decide: Callable[[Reader, str, R, float], Awaitable[Plan]]
    fingerprinted: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None
    footprint: Callable[[str, R], Footprint] | None = None
    shortcut: Shortcut[R] | None = None


class Prepared(NamedTuple):
    """A command that passed validation: ready for the read and write phases."""

    key: str
    resource: str
    fingerprint: str
    action: Action[Any]
    request: Any


#: ``cancelled(reader, resource)``: the refusal a late action on a tombstoned resource gets.
Cancelled = Callable[[Reader, str], Awaitable[Reply | None]]
#: The refusal of an action whose resource (``<saga id>:<step>``) exists already, else None.
Existing = Callable[[Reader, str], Awaitable[Reply | None]]
