"""The life of the resource a step creates, and the tombstones that keep late actions out.

Every service keeps one resource per ``<saga id>:<step>`` (its ``ref``) in a table with at least
the columns ``ref`` (primary key), ``order_id``, ``state``, ``tombstone`` (0/1), ``version``,
``created_at``, ``updated_at``; every other column has a default. Its explicit state machine::

    (unseen) ──action──► initial ──confirm──► confirmed
        │                   └────compensate──► cancelled
        └──compensate──► cancelled + tombstone
    (a service may add terminal states, e.g. a declined payment, which compensate as a no-op)

Rules shared by all three services:

* compensate: initial → cancelled (undoing the action's effects); unseen → a tombstone (a
  cancelled row without effects) so the action arriving late is refused; cancelled or another
  terminal state → a no-op success; confirmed → refused (illegal transition).
* confirm: initial → confirmed; confirmed → a no-op success; anything else → refused.
* action on an existing ref: a tombstone → refused "<noun> cancelled"; otherwise refused. An
  action does not look for the row: its plan *claims* the ref (an INSERT under the primary key)
  and the kit answers with :meth:`Lifecycle.refused_existing` when the row is there. An action
  refused for its own reasons (no stock, say) claims nothing and keeps that reason.
* a compensation or confirmation naming another order than the resource's is refused.

Every state change is a compare-and-swap on the row's ``version`` (see :mod:`.kit`), or, for a
confirmation's shortcut (:meth:`Lifecycle.confirm_shortcut`, which reads nothing first), an
``UPDATE`` guarded by the state itself: a row's version only ever moves with its state.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol

from ordersaga.db import Row, Tx
from ordersaga.participant.kit import Plan, Reader, Write
from ordersaga.participant.plan import Footprint, RowKey, Shortcut
from ordersaga.protocol.messages import Reply, ReplyStatus, canonical_json
from ordersaga.slots import tuple_new

#: Read once (see :mod:`ordersaga.saga.driver`: a member read through its enum class takes the
#: metaclass's slow attribute path on Python 3.11, ~0.9k instructions): the very member.
_OK = ReplyStatus.OK

__all__ = ["Effects", "EffectsByRef", "Lifecycle"]


def _literal(text: str) -> str:
    """``text`` as an SQL string literal (a state of the frozen spec, never input)."""
    return "'" + text.replace("'", "''") + "'"


class Effects(Protocol):
    """The writes that go with a transition, given the resource row (e.g. stock back to
    available). Like a decision, it only reads; the kit runs the writes it returns."""

    def __call__(self, reader: Reader, row: Row, /) -> Awaitable[Sequence[Write]]:
        """The writes for ``row``'s transition (none is fine)."""
        ...


class EffectsByRef(Protocol):
    """The writes of a transition's effects given the resource's ref, not its row: the same
    writes as the :class:`Effects` of that row, for a shortcut that does not read the row
    first. They read what they need of it themselves, by the ref: in a read of their own, or in
    the statements (``... WHERE user_id = (SELECT user_id FROM payments WHERE ref = ?)``)."""

    def __call__(self, reader: Reader, ref: str, /) -> Awaitable[Sequence[Write]]:
        """The writes for the transition of the resource ``ref`` (none is fine)."""
        ...


#: The columns of a resource's row the life cycle reads itself: for :meth:`Lifecycle.load`, and
#: for a compensation or confirmation (a tombstone's state alone tells it: cancelled).
_OWN = ("ref", "order_id", "state", "tombstone", "version")
_DECIDE = ("order_id", "state", "version")


@dataclass(frozen=True, slots=True)
class Lifecycle:
    """The state machine of one service's resource table (inert data; functions below)."""

    table: str
    noun: str
    initial: str
    confirmed: str
    cancelled: str
    compensate_verb: str
    confirm_verb: str
    #: Terminal states besides confirmed/cancelled; compensating them is a no-op success.
    other_terminal: frozenset[str] = field(default_factory=frozenset)
    #: The columns of the row the effects read, besides those the life cycle reads itself (a
    #: compensation or confirmation: ``order_id``, ``state``, ``version``, and ``ref``, which is
    #: the one it looks up; :meth:`load` adds ``tombstone``). ``None``: every column (``SELECT
    #: *``). Each column read costs about as much as a bound parameter (SQLite hands it over,
    #: Python makes an object and a dict entry of it), so the services name theirs.
    columns: tuple[str, ...] | None = None
    # Derived once from the fields above (the statements, and each state's reply body as
    # canonical JSON, attached to every such reply so it is never encoded again).
    _load: str = field(init=False, repr=False, compare=False)
    _decide: str = field(init=False, repr=False, compare=False)
    _transition: str = field(init=False, repr=False, compare=False)
    _confirm_any: str = field(init=False, repr=False, compare=False)
    _confirm_order: str = field(init=False, repr=False, compare=False)
    _state_json: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # The table name comes from this frozen spec, never from input.
        table = self.table
        confirm = (
            f"UPDATE {table} SET state = {_literal(self.confirmed)}, version = version + 1,"
            f" updated_at = ? WHERE ref = ? AND state = {_literal(self.initial)}"
        )
        derived = {
            "_load": f"SELECT {self._columns(_OWN)} FROM {table} WHERE ref = ?",
            "_decide": f"SELECT {self._columns(_DECIDE)} FROM {table} WHERE ref = ?",
            "_transition": f"UPDATE {table} SET state = ?, version = version + 1, updated_at = ?"
            " WHERE ref = ? AND version = ?",
            # A confirmation's shortcut: initial → confirmed, the state checked by the write.
            "_confirm_any": confirm,
            "_confirm_order": confirm + " AND order_id = ?",
            "_state_json": {
                state: canonical_json({"state": state})
                for state in (self.initial, self.confirmed, self.cancelled, *self.other_terminal)
            },
        }
        for name, value in derived.items():
            object.__setattr__(self, name, value)

    def _columns(self, own: tuple[str, ...]) -> str:
        return "*" if self.columns is None else ", ".join(dict.fromkeys(own + self.columns))

    def cancelled_reply(self) -> Reply:
        """The refusal of an action whose resource was cancelled before it arrived."""
        return Reply.refused(f"{self.noun} cancelled")

    async def load(self, reader: Reader, ref: str) -> Row | None:
        """The row of ``ref``, if any: the life cycle's columns and its effects' (``columns``)."""
        return await reader.fetchone(self._load, ref)

    async def cancelled_action(self, reader: Reader, ref: str) -> Reply | None:
        """The refusal a late action on ``ref`` gets if a tombstone is there, else ``None``."""
        row = await reader.fetchone(f"SELECT tombstone FROM {self.table} WHERE ref = ?", ref)
        return self.cancelled_reply() if row is not None and row["tombstone"] else None

    async def refused_existing(self, reader: Reader, ref: str) -> Reply | None:
        """The refusal of an action whose resource ``ref`` exists already, else ``None`` (an
        action's plan claims its resource without looking: see :class:`~.plan.Plan`)."""
        row = await self.load(reader, ref)
        return None if row is None else self.refuse_existing(row).reply

    def refuse_existing(self, row: Row) -> Plan:
        """The plan for an action whose resource already exists under another key."""
        if row["tombstone"]:
            return Plan(self.cancelled_reply())
        return Plan(Reply.refused(f"{self.noun} {row['ref']!r} already exists ({row['state']})"))

    def transition(self, row: Row, state: str, now: float) -> Write:
        """Move ``row`` to ``state`` if nobody changed it since it was read."""
        return tuple_new(Write, (self._transition, (state, now, row["ref"], row["version"]), 1))

    def tombstone(self, ref: str, order_id: str, now: float) -> Write:
        # A plain INSERT: if the action commits first, the primary key makes this conflict and
        # the compensation is decided again on the real row.
        return Write(
            f"INSERT INTO {self.table}"
            " (ref, order_id, state, tombstone, version, created_at, updated_at)"
            " VALUES (?, ?, ?, 1, 1, ?, ?)",
            (ref, order_id, self.cancelled, now, now),
        )

    def footprint(self, *effect_tables: str) -> Callable[[str, object], Footprint]:
        """The footprint of a compensation or confirmation (:class:`~.plan.Footprint`): it
        reads and writes its own row, and its effects may write any row of ``effect_tables``
        (the rows it learns from its own: the items of a reservation, say)."""
        table, anywhere = self.table, frozenset(effect_tables)

        def footprint(ref: str, _request: object) -> Footprint:
            own = frozenset(((table, ref),))
            return Footprint(own, own, anywhere)

        return footprint

    def own(self, ref: str, *others: RowKey) -> Footprint:
        """The footprint of an action on ``ref`` reading and writing the rows ``others`` too:
        it claims its own row (and the kit may look it up: an existing resource's refusal)."""
        rows = frozenset(((self.table, ref), *others))
        return Footprint(rows, rows)

    def compensator(self, undo: Effects) -> Callable[[Reader, str, str, float], Awaitable[Plan]]:
        """A compensating action's ``decide``: :meth:`compensate` with ``undo`` (its coroutine
        itself, no coroutine of the service's around it)."""
        return partial(self.compensate, undo=undo)

    def confirmer(
        self, effects: Effects
    ) -> Callable[[Reader, str, str | None, float], Awaitable[Plan]]:
        """A confirming action's ``decide``: :meth:`confirm` with ``effects``."""
        return partial(self.confirm, effects=effects)

    def confirm_shortcut(self, effects: EffectsByRef | None = None) -> Shortcut[str | None]:
        """A confirming action's :class:`~.plan.Shortcut`: :meth:`confirm_now` with ``effects``
        (none: a confirmation without effects), and the confirmed state's reply."""
        return Shortcut(
            partial(self._state, self.confirmed), partial(self.confirm_now, effects=effects)
        )

    async def confirm_now(
        self,
        tx: Tx,
        ref: str,
        order_id: str | None,
        now: float,
        effects: EffectsByRef | None = None,
    ) -> Sequence[Write] | None:
        """Confirm ``ref`` if it is in the initial state (and belongs to ``order_id`` when
        given), in one guarded ``UPDATE``: the effects' writes to run next, or ``None`` when it
        was not (nothing changed). What :meth:`confirm` plans from the initial state; the state
        is checked by the write itself, not by the version read before it (a resource's version
        moves only with its state)."""
        if order_id is None:
            changed = await tx.execute(self._confirm_any, now, ref)
        else:
            changed = await tx.execute(self._confirm_order, now, ref, order_id)
        if not changed:
            return None
        return () if effects is None else await effects(tx, ref)

    async def compensate(
        self, reader: Reader, ref: str, order_id: str, now: float, undo: Effects
    ) -> Plan:
        """Plan the compensation of ``ref`` (see the module docstring for the rules)."""
        row = await reader.fetchone(self._decide, ref)
        if row is None:
            return Plan(self._state(self.cancelled), (self.tombstone(ref, order_id, now),))
        row["ref"] = ref  # not read: the one looked up
        if row["order_id"] != order_id:
            return Plan(self._wrong_order(row, order_id))
        state = row["state"]
        if state == self.initial:
            writes = (*await undo(reader, row), self.transition(row, self.cancelled, now))
            return Plan(self._state(self.cancelled), writes)
        if state == self.cancelled or state in self.other_terminal:
            return Plan(self._state(state))
        return Plan(self._illegal(state, self.compensate_verb))

    async def confirm(
        self, reader: Reader, ref: str, order_id: str | None, now: float, effects: Effects
    ) -> Plan:
        """Plan the confirmation of ``ref``; ``order_id`` is checked when given."""
        row = await reader.fetchone(self._decide, ref)
        if row is None:
            return Plan(Reply.refused(f"no {self.noun} {ref!r} to {self.confirm_verb}"))
        row["ref"] = ref  # not read: the one looked up
        if order_id is not None and row["order_id"] != order_id:
            return Plan(self._wrong_order(row, order_id))
        state = row["state"]
        if state == self.initial:
            writes = (*await effects(reader, row), self.transition(row, self.confirmed, now))
            return Plan(self._state(self.confirmed), writes)
        if state == self.confirmed:
            return Plan(self._state(state))
        return Plan(self._illegal(state, self.confirm_verb))

    def _state(self, state: str) -> Reply:
        return Reply(_OK, {"state": state}, None, self._state_json.get(state))

    def _illegal(self, state: str, verb: str) -> Reply:
        return Reply.refused(f"illegal transition: {self.noun} is {state}, cannot {verb}")

    def _wrong_order(self, row: Row, order_id: str) -> Reply:
        return Reply.refused(
            f"{self.noun} {row['ref']!r} belongs to order {row['order_id']!r}, not {order_id!r}"
        )
