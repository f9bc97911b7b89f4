"""The saga log: the durable truth about every saga, behind a small store protocol.

A saga's record holds its input, its status, and one :class:`StepRecord` per (step, phase) that
has a known outcome. The engine writes through :meth:`SagaStore.create` and
:meth:`SagaStore.update`; each call is one atomic, durable write: when the awaited call returns,
the write survives a crash (a backend may batch the writes of concurrent sagas into one commit —
group commit — but never returns before that commit). A decision is therefore durable before the
engine acts on it, and a terminal status is written in the same write as the last step records.

Status life cycle (anything else is refused with :class:`ordersaga.errors.ConflictError`)::

    running ──► confirming ──► confirmed
       │
       └──────► compensating ──► failed
    (running may also go straight to failed when nothing needs compensating, and straight to
    confirmed when the deciding step is the last one: nothing is left to confirm)

Backends: SQLite (the embedded default, a file in the data dir), PostgreSQL, and an in-memory one
(for ``--no-durability`` and tests). All of them pass one contract test suite.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from ordersaga.saga.store.operator import (
    OperatorAction,
    Repair,
    SagaEntry,
    SagaFilter,
    SagaPage,
)
from ordersaga.saga.store.records import (
    ALLOWED_TRANSITIONS,
    TERMINAL,
    Attempt,
    Compacted,
    SagaRecord,
    SagaStatus,
    StepRecord,
    StepStatus,
)

__all__ = [
    "ALLOWED_TRANSITIONS",
    "TERMINAL",
    "Attempt",
    "Compacted",
    "PruneStats",
    "SagaRecord",
    "SagaStatus",
    "SagaStore",
    "StepRecord",
    "StepStatus",
    "StoreStats",
]


@dataclass(slots=True)
class StoreStats:
    """Counters a store keeps for benchmarks: durable commits and the writes they carried."""

    commits: int = 0
    writes: int = 0


@dataclass(frozen=True, slots=True)
class PruneStats:
    """What one :meth:`SagaStore.prune` did (or, with ``dry_run``, would do)."""

    sagas: int = 0  # finished sagas compacted to their compact record
    steps: int = 0  # step records deleted with them


class SagaStore(abc.ABC):
    """The saga log. Every method is safe to call from many coroutines at once.

    A store is an async context manager: ``async with await open_store(url) as store:`` closes
    it (flushing pending writes) on the way out.

    A value that is not JSON (in ``input`` or a step's ``result``) fails its own call
    (``TypeError``/``ValueError``) before anything is written. A call cancelled while it waits
    for its commit may still have been written (as with any cancelled commit); the log tells.
    """

    stats: StoreStats

    @abc.abstractmethod
    async def create(
        self,
        saga_id: str,
        definition: str,
        input: Mapping[str, Any],
        fingerprint: str,
        *,
        status: SagaStatus = SagaStatus.RUNNING,
        reason: str | None = None,
    ) -> tuple[SagaRecord, bool]:
        """Insert a new saga, durably; if ``saga_id`` exists, change nothing.

        Returns the stored record and whether this call created it (of two concurrent creates of
        one id, the first made wins). The caller compares fingerprints to tell a resubmission
        from a different saga reusing the id. ``status`` may be terminal (``failed``) to record a
        saga that was decided without any step.
        """

    @abc.abstractmethod
    async def update(
        self,
        saga_id: str,
        *,
        steps: Sequence[StepRecord] = (),
        status: SagaStatus | None = None,
        reason: str | None = None,
        needs_attention: bool | None = None,
        owner: str | None = None,
        input: Mapping[str, Any] | None = None,
        attention_reason: str | None = None,
    ) -> None:
        """Atomically and durably upsert step records (by step and phase) and change status.

        ``status``, ``reason`` and ``needs_attention`` left at None stay as they are. Setting
        ``needs_attention`` stores ``attention_reason`` with it (why a person should look);
        clearing it clears the reason. ``input``,
        when given, replaces the saga's input: the engine erases what a decided saga no longer
        needs (:attr:`ordersaga.saga.definition.SagaDefinition.redact`), and the old value is
        overwritten in the same atomic write. Updates of
        one saga apply in the order the calls were made, even when they share a commit. A finished
        saga takes no update at all, not even one that only adds step records.

        ``owner`` fences the write: when given, it applies only if the saga is held by that
        owner at the moment of the commit (a lease taken with ``claim``, see
        :mod:`ordersaga.saga.store.postgres`). A worker whose lease lapsed and was taken over can
        then write nothing more, however late it wakes up. Stores without leases hold no saga
        for anyone, so there a fenced update is always refused.

        Raises :class:`ordersaga.errors.ConflictError` for an unknown saga, a status change
        that :data:`ALLOWED_TRANSITIONS` forbids (in particular any change to a finished saga),
        or an ``owner`` that does not hold the saga.
        """

    @abc.abstractmethod
    async def load(self, saga_id: str) -> SagaRecord | None:
        """The saga's record as last committed, or None for an unknown id."""

    @abc.abstractmethod
    async def unfinished(self) -> list[SagaRecord]:
        """Every saga whose status is not terminal, oldest first."""

    @abc.abstractmethod
    def scan(self, batch_size: int = 500) -> AsyncIterator[SagaRecord]:
        """Every saga, in creation order, read in batches (for the audit)."""

    @abc.abstractmethod
    async def count_by_status(self) -> dict[SagaStatus, int]:
        """How many sagas are in each status (every status present, zeros included)."""

    # -- inspection and repair (operators; never on the engine's path) -------------------------

    @abc.abstractmethod
    async def list_sagas(self, query: SagaFilter) -> SagaPage:
        """Sagas matching ``query``, newest (last created) first, with their step records."""

    @abc.abstractmethod
    async def inspect(self, saga_id: str) -> SagaEntry | None:
        """One saga with its holder and operator actions (oldest first), or None."""

    @abc.abstractmethod
    async def operator_actions(self) -> list[OperatorAction]:
        """Every operator action in the log, oldest first (people act rarely: they are few)."""

    @abc.abstractmethod
    async def repair(self, saga_id: str, change: Repair, action: OperatorAction) -> SagaEntry:
        """Apply ``change`` and record ``action`` in one durable transaction; return the result.

        Raises :class:`ordersaga.errors.ConflictError` for an unknown saga or one whose status
        is not in ``change.expect`` (then nothing is written).
        """

    @abc.abstractmethod
    async def prune(
        self, before: float, *, batch_size: int = 500, dry_run: bool = False
    ) -> PruneStats:
        """Compact every finished saga whose end (``updated_at``) is before ``before``.

        Retention: a compacted saga keeps its compact record — id, definition, fingerprint,
        status, reason, created and decided times — so a resubmission still replays its outcome
        and a reused id still fails; its input and step records are deleted. A saga that is not
        finished, or is flagged for attention, is never touched; neither is one already
        compacted. Finished sagas take no update, so pruning never races the engine. SQL stores
        work in transactions of ``batch_size`` sagas, so the hot path is never held up for long.
        """

    @abc.abstractmethod
    async def sweep(
        self,
        name: str,
        before: float,
        visit: Callable[[Sequence[str]], Awaitable[None]],
        *,
        batch_size: int = 500,
        dry_run: bool = False,
    ) -> int:
        """Call ``visit`` once with each batch of finished sagas that ended before ``before``.

        What retention in other databases hangs on (the services' records of finished sagas):
        each saga is visited once per ``name`` (compacted or not; never one still running or
        flagged), in creation order; progress is remembered after each batch, so a visit cut
        short by a crash is repeated and must be idempotent (``dry_run``: nothing remembered).
        Returns how many were visited.
        """

    @abc.abstractmethod
    async def decided(self, saga_ids: Sequence[str], before: float) -> set[str]:
        """Those of ``saga_ids`` that are finished, not flagged, and ended before ``before``."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Flush pending writes and release the database."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the store, whatever ended the block."""
        await self.close()
