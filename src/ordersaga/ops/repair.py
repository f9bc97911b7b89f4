"""Repairing sagas by hand: retry, resolve, cancel — each one change and its record, atomically.

Every repair is a :class:`~ordersaga.saga.store.base.Repair` applied by the store in one
transaction together with an :class:`~ordersaga.saga.store.base.OperatorAction` (when, who, why),
and only if the saga is still in a status the repair expects — decided here from what the log
says, and checked again under the row lock, so a saga that moved on meanwhile is refused rather
than overwritten. Why each is safe while an executor runs:

* **retry** (an unfinished saga): clears the attention flag and releases the saga's lease. On a
  PostgreSQL log, the worker holding it loses it (its next renewal says so; its fenced writes are
  refused) and the next claim — announced at once — resumes it from the log with a fresh backoff.
  Resuming is what recovery does after a crash, so it is safe (see ``saga/recovery.py``). A run
  that executes a data dir itself keeps retrying its sagas on its own; a saga left unfinished by
  a run that stopped resumes at the next ``run`` (which finishes unfinished sagas first).
* **resolve** (after a person settled things by hand): closes the saga as ``confirmed`` or
  ``failed``. It may not contradict the log's decision: a saga decided to confirm cannot be
  resolved as failed, nor the reverse (a running saga is undecided: either is allowed). The saga
  being finished, any executor still driving it writes nothing more (a finished saga takes no
  update) and reports the resolved outcome.
* **cancel** (before the decision only): turns a running saga to ``compensating``. Every forward
  step without a logged outcome gets an ``unknown`` record, so the compensation covers a call an
  executor may have in flight (a compensation the service never saw the action of leaves a
  tombstone that refuses the late action). The lease is released: a worker driving it is fenced
  off and the next claim compensates; a run driving it in process finds its next write refused,
  reads the log and compensates (see ``SagaEngine._drive``). A saga whose definition this build
  does not know (a user saga, run by ``ordersaga worker --saga``) gets no such records here: its
  executor adds them as it compensates (see ``cancelled_blind`` in ``saga/logwriter.py``).
"""

from __future__ import annotations

import getpass
import os
import time
from collections.abc import Callable, Sequence

from ordersaga.errors import ConfigError, ConflictError
from ordersaga.ops.views import DECIDED, DEFINITIONS
from ordersaga.protocol.messages import Phase
from ordersaga.saga.outcome import CANCELLED_REASON
from ordersaga.saga.store import PostgresSagaStore
from ordersaga.saga.store.base import TERMINAL, SagaStatus, SagaStore, StepRecord, StepStatus
from ordersaga.saga.store.model import UNFINISHED
from ordersaga.saga.store.operator import OperatorAction, Repair, SagaEntry
from ordersaga.saga.store.signals import WORK_CHANNEL

__all__ = ["RESOLUTIONS", "cancel", "default_operator", "resolve", "retry"]

RESOLUTIONS = ("failed", "confirmed")
_RESOLVABLE = {
    "confirmed": frozenset({SagaStatus.RUNNING, SagaStatus.CONFIRMING, SagaStatus.CONFIRMED}),
    "failed": frozenset({SagaStatus.RUNNING, SagaStatus.COMPENSATING, SagaStatus.FAILED}),
}


def default_operator() -> str:
    """Who acts: the OS user (``--by`` overrides it)."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return f"uid {os.getuid()}"


async def _entry(store: SagaStore, saga_id: str) -> SagaEntry:
    entry = await store.inspect(saga_id)
    if entry is None:
        raise ConfigError(f"no saga {saga_id!r} in the saga log")
    return entry


async def _apply(
    store: SagaStore, saga_id: str, change: Repair, action: OperatorAction
) -> SagaEntry:
    try:
        entry = await store.repair(saga_id, change, action)
    except ConflictError as exc:
        raise ConfigError(
            f"{exc}: it changed meanwhile; look again ('ordersaga sagas show')"
        ) from exc
    if change.release and isinstance(store, PostgresSagaStore):
        # Wake the workers: claim it now rather than at the next poll.
        await store.database.fetchone("SELECT pg_notify(?, '') AS sent", WORK_CHANNEL)
    return entry


async def retry(store: SagaStore, saga_id: str, who: str, note: str | None) -> SagaEntry:
    entry = await _entry(store, saga_id)
    status = entry.record.status
    if status.terminal:
        raise ConfigError(f"saga {saga_id!r} is finished ({status.value}): nothing to retry")
    change = Repair(frozenset(UNFINISHED), needs_attention=False)
    return await _apply(store, saga_id, change, OperatorAction(saga_id, "retry", who, note))


async def resolve(store: SagaStore, saga_id: str, outcome: str, who: str, note: str) -> SagaEntry:
    if outcome not in RESOLUTIONS:
        raise ConfigError(f"resolve as {' or '.join(RESOLUTIONS)}, not {outcome!r}")
    entry = await _entry(store, saga_id)
    record = entry.record
    allowed = _RESOLVABLE[outcome]
    if record.status not in allowed:
        decided = DECIDED[record.status]
        raise ConfigError(
            f"saga {saga_id!r} was decided {decided} (status {record.status.value}):"
            f" resolving it as {outcome} would contradict the log"
        )
    target = SagaStatus.CONFIRMED if outcome == "confirmed" else SagaStatus.FAILED
    reason = None
    if target is SagaStatus.FAILED and record.reason is None:
        reason = f"resolved as failed by {who}: {note}"
    change = Repair(allowed, status=target, reason=reason, needs_attention=False)
    action = OperatorAction(saga_id, f"resolve {outcome}", who, note)
    return await _apply(store, saga_id, change, action)


async def cancel(
    store: SagaStore,
    saga_id: str,
    who: str,
    note: str | None,
    clock: Callable[[], float] = time.time,
) -> SagaEntry:
    entry = await _entry(store, saga_id)
    record = entry.record
    if record.status is not SagaStatus.RUNNING:
        when = "finished" if record.status in TERMINAL else "decided"
        raise ConfigError(
            f"saga {saga_id!r} is already {when} ({record.status.value}):"
            " cancel acts before the decision only"
        )
    # A user saga's definition (ordersaga worker --saga) is unknown here: its executor, which
    # knows its steps, writes their unknown records as it compensates (saga/driver.py).
    definition = DEFINITIONS.get(record.definition)
    steps: tuple[StepRecord, ...] = ()
    if definition is not None:
        forward = [s.name for s in definition.forward_steps]
        steps = _unknown_steps(record.steps, forward, clock())
    reason = f"cancelled by {who}" + (f": {note}" if note else "")
    change = Repair(
        frozenset({SagaStatus.RUNNING}),
        status=SagaStatus.COMPENSATING,
        reason=reason,
        needs_attention=False,
        steps=steps,
    )
    return await _apply(store, saga_id, change, OperatorAction(saga_id, "cancel", who, note))


def _unknown_steps(
    logged: Sequence[StepRecord], forward: Sequence[str], at: float
) -> tuple[StepRecord, ...]:
    """An ``unknown`` record for each forward step the log has no outcome of (see the module)."""
    known = {r.step for r in logged if r.phase is Phase.ACTION}
    return tuple(
        StepRecord(name, Phase.ACTION, StepStatus.UNKNOWN, {}, CANCELLED_REASON, 0, at, at)
        for name in forward
        if name not in known
    )
