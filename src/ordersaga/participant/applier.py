"""One command's write phase inside its batch's transaction (:mod:`ordersaga.participant.kit`).

:class:`Applier` records a command's reply and runs its writes: decided in the batch (its read
phase after the commands before it), by its action's shortcut, or from a plan decided before the
batch. The record's INSERT tells a repeat, the claim's INSERT an existing resource; see the kit's
docstring for why each step is safe.
"""

from __future__ import annotations

from typing import Any

from ordersaga.db import Tx
from ordersaga.errors import ConflictError
from ordersaga.participant.plan import Existing, Plan, Prepared, Reader, Shortcut
from ordersaga.participant.records import (
    RECORD,
    REWRITE,
    Encoded,
    encode,
    handed_back,
    replay,
    stored,
    write_plan,
)
from ordersaga.protocol.messages import Phase, Reply

__all__ = ["Applier", "Job"]

#: Read once (see :mod:`ordersaga.saga.driver`: a member read through its enum class takes the
#: metaclass's slow attribute path on Python 3.11, ~0.9k instructions): the very member.
_ACTION = Phase.ACTION

#: One command's write phase in a batch: the command, and its plan unless it is decided inside
#: the batch (a plain pair: one per command).
Job = tuple[Prepared, Plan | None]


class Applier:
    """Applies one service's commands inside the transactions it is given (never commits)."""

    __slots__ = ("_existing", "_record", "_service", "_unless_taken")

    def __init__(self, service: str, dialect: str, existing: Existing | None) -> None:
        self._service = service
        self._existing = existing
        # A command decided in its batch need not look its key or its resource up first: the
        # record's INSERT finds a repeat, the claim's an existing resource (see apply_job). On
        # SQLite a failed statement undoes only itself; on PostgreSQL, where it would abort the
        # transaction, both INSERTs do nothing on a taken key instead (except when pipelined).
        self._unless_taken = "" if dialect == "sqlite" else " ON CONFLICT DO NOTHING"
        self._record = RECORD + self._unless_taken

    async def apply_job(self, tx: Tx, job: Job, now: float) -> tuple[Reply, bool]:
        """One command's part of a batch: its reply, and whether it wrote anything."""
        cmd, given = job
        if given is not None:
            return await self.apply(tx, cmd, given, now), True
        key, resource, fingerprint, action, request = cmd
        shortcut = action.shortcut
        if shortcut is not None:  # the usual reply, recorded before its guarded change
            reply = shortcut.reply()
        else:
            plan = await action.decide(tx, resource, request, now)
            if plan.claim is None and action.phase is _ACTION:
                plan = await self.unless_existing(tx, cmd, plan)
            reply = plan.reply
        encoded = status, _, text = encode(reply)
        try:
            recorded = await tx.execute(self._record, key, fingerprint, status, text, now)
        except ConflictError:
            recorded = 0  # SQLite: the failed INSERT undid only itself
        if not recorded:
            return await self._replayed(tx, cmd), False
        if shortcut is not None:
            return await self._shortcut(tx, cmd, shortcut, now, (reply, encoded)), True
        claim = plan.claim
        if claim is not None:
            try:
                await tx.write(claim.sql + self._unless_taken, claim.params, 1)
            except ConflictError:
                # The resource exists already (its key is new: a tombstone, or another key's
                # row). The INSERT wrote nothing: record the refusal instead.
                refusal = await self._refusal_of_existing(tx, cmd)
                encoded = status, _, text = encode(refusal)
                await tx.execute(REWRITE, status, text, key)
                return handed_back(refusal, encoded), True
        for sql, params, expect in plan.writes:  # unpacked: a call with * takes the slow path
            await tx.write(sql, params, expect)
        return handed_back(reply, encoded), True

    async def _shortcut(
        self,
        tx: Tx,
        cmd: Prepared,
        shortcut: Shortcut[Any],
        now: float,
        usual: tuple[Reply, Encoded],
    ) -> Reply:
        """The rest of :meth:`apply_job` by the action's shortcut (:class:`Shortcut`), its usual
        reply recorded (``usual``, with its encoding): the guarded change, or, where the usual
        outcome does not hold, the command decided as usual and its record corrected."""
        key, resource, _, action, request = cmd
        reply, encoded = usual
        writes = await shortcut.apply(tx, resource, request, now)
        if writes is None:
            plan = await action.decide(tx, resource, request, now)
            decided = encode(plan.reply)
            if decided != encoded:
                await tx.execute(REWRITE, decided[0], decided[2], key)
            return await write_plan(tx, plan, decided)
        for sql, params, expect in writes:
            await tx.write(sql, params, expect)
        return handed_back(reply, encoded)

    async def _replayed(self, tx: Tx, cmd: Prepared) -> Reply:
        """The reply to a repeat: its key is recorded already (PostgreSQL's INSERT waited for a
        concurrent transaction holding the key to end, and this statement sees its commit)."""
        record = await stored(tx, cmd.key)
        if record is None:
            raise ConflictError(f"{self._service}: {cmd.key}: the key is taken")
        return replay(cmd.key, cmd.fingerprint, record)

    async def unless_existing(self, reader: Reader, cmd: Prepared, plan: Plan) -> Plan:
        """``plan``, or the refusal of an action whose resource exists: looked up for an action
        that claims nothing (refused for its own reasons: a tombstone's refusal comes first), and
        for a plan decided before its batch (:meth:`apply`)."""
        if cmd.action.phase is not _ACTION:
            return plan
        existing = await self._refused_existing(reader, cmd)
        return plan if existing is None else Plan(existing)

    async def _refused_existing(self, reader: Reader, cmd: Prepared) -> Reply | None:
        if self._existing is None:
            return None
        return await self._existing(reader, cmd.resource)

    async def _refusal_of_existing(self, reader: Reader, cmd: Prepared) -> Reply:
        refusal = await self._refused_existing(reader, cmd)
        if refusal is None:  # no such row after all (or no way to tell): decide again
            raise ConflictError(f"{self._service}: {cmd.resource}: the resource is taken")
        return refusal

    async def apply(self, tx: Tx, cmd: Prepared, plan: Plan, now: float) -> Reply:
        """Record ``cmd``'s reply and run its writes inside ``tx``, without committing.

        Raises :class:`ConflictError` when the key is already recorded or a write finds a state
        other than the one ``plan`` was decided on; the caller must roll ``tx`` back.
        """
        plan = await self.unless_existing(tx, cmd, plan)
        encoded = status, _, text = encode(plan.reply)
        await tx.write(RECORD, (cmd.key, cmd.fingerprint, status, text, now), 1)
        return await write_plan(tx, plan, encoded)
