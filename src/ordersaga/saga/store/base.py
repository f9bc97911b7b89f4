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
import enum
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, NamedTuple, Self

from ordersaga.protocol.messages import Phase

__all__ = [
    "ALLOWED_TRANSITIONS",
    "TERMINAL",
    "Attempt",
    "Compacted",
    "OperatorAction",
    "PruneStats",
    "Repair",
    "SagaEntry",
    "SagaFilter",
    "SagaPage",
    "SagaRecord",
    "SagaStatus",
    "SagaStore",
    "StepRecord",
    "StepStatus",
    "StoreStats",
]


class SagaStatus(enum.StrEnum):
    """Where a saga stands (the life cycle is drawn in the module docstring)."""

    RUNNING = "running"
    COMPENSATING = "compensating"
    CONFIRMING = "confirming"
    CONFIRMED = "confirmed"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({SagaStatus.CONFIRMED, SagaStatus.FAILED})

ALLOWED_TRANSITIONS: Mapping[SagaStatus, frozenset[SagaStatus]] = {
    SagaStatus.RUNNING: frozenset(
        {
            SagaStatus.RUNNING,
            SagaStatus.CONFIRMING,
            SagaStatus.CONFIRMED,
            SagaStatus.COMPENSATING,
            SagaStatus.FAILED,
        }
    ),
    SagaStatus.CONFIRMING: frozenset({SagaStatus.CONFIRMING, SagaStatus.CONFIRMED}),
    SagaStatus.COMPENSATING: frozenset({SagaStatus.COMPENSATING, SagaStatus.FAILED}),
    SagaStatus.CONFIRMED: frozenset(),
    SagaStatus.FAILED: frozenset(),
}


class StepStatus(enum.StrEnum):
    """The known outcome of one phase of one step."""

    SUCCEEDED = "succeeded"  # the service applied it (result holds its reply body)
    REFUSED = "refused"  # a definite refusal: nothing applied, never compensated
    UNKNOWN = "unknown"  # retries and the probe could not tell: compensated to be safe
    #: Never reached the service (unreachable until the order's deadline): nothing to undo.
    UNDELIVERED = "undelivered"


class Attempt(NamedTuple):
    """One send of a step's command (``kind`` ``"a"``) or one status probe of its key (``"p"``).

    An attempt's ``result``: ``applied``, ``refused`` (a definite refusal), ``unknown`` (an
    answer that is not final), ``lost`` (no answer: request or response lost, or timed out) or
    ``unreachable`` (no connection: it never arrived), with the ``error`` of the last two. A
    probe's ``result`` is what it found: ``applied``, ``refused``, ``unknown`` or ``no answer``.
    """

    kind: str  # "a" attempt | "p" probe
    at: float  # wall-clock seconds it was sent
    duration: float  # seconds until its answer (or its failure)
    result: str
    error: str | None = None


@dataclass(frozen=True, slots=True)
class StepRecord:
    """The known outcome of one phase of one step.

    ``trail``: every attempt and probe, in order — empty for a plain call (one attempt,
    answered: the record's own span) and in records from before trails (see ``saga/trail.py``).
    """

    step: str
    phase: Phase
    status: StepStatus
    result: Mapping[str, Any] = field(default_factory=dict)
    reason: str | None = None
    attempts: int = 1
    started_at: float = 0.0  # wall-clock seconds (time.time())
    ended_at: float = 0.0
    trail: tuple[Attempt, ...] = ()
    #: ``result``'s canonical JSON when the service's reply carried it (logged as it is).
    result_json: str | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Compacted:
    """What a compacted saga keeps of its step records (see :mod:`ordersaga.saga.outcome`)."""

    step: str | None  # the step that failed it (None: confirmed, or no step ran)
    cause: str | None  # why it failed: business | technical | input | operator
    retries: int
    compensations: int


@dataclass(frozen=True, slots=True)
class SagaRecord:
    """A saga as the log knows it.

    ``steps`` holds one record per (step, phase), ordered by ``started_at`` and then by when the
    (step, phase) was first written (rewriting it keeps its place). ``input`` and each step's
    ``result`` went through JSON, as stored: a tuple comes back as a list.
    """

    saga_id: str
    definition: str
    input: Mapping[str, Any]
    fingerprint: str
    status: SagaStatus
    steps: tuple[StepRecord, ...] = ()
    reason: str | None = None
    needs_attention: bool = False
    created_at: float = 0.0
    updated_at: float = 0.0
    #: Set once retention compacted the saga (:meth:`SagaStore.prune`): ``input`` is empty and
    #: ``steps`` gone; the id, fingerprint, status, reason, times (``updated_at``: decided at)
    #: and this summary of the steps remain, so its outcome replays exactly as before.
    compacted: Compacted | None = None
    #: Why the saga is flagged (``needs_attention``): what a person should look at. None when
    #: it is not flagged (clearing the flag clears it), or flagged by a build before it.
    attention_reason: str | None = None

    @property
    def pruned(self) -> bool:
        return self.compacted is not None

    def step(self, step: str, phase: Phase = Phase.ACTION) -> StepRecord | None:
        for record in self.steps:
            if record.step == step and record.phase is phase:
                return record
        return None


@dataclass(frozen=True, slots=True)
class OperatorAction:
    """A person's act on a saga (``ordersaga sagas retry|resolve|cancel``), kept in the log."""

    saga_id: str
    action: str  # retry | resolve | cancel
    who: str
    note: str | None = None
    at: float = 0.0  # wall-clock seconds; the store stamps it when the action is recorded


@dataclass(frozen=True, slots=True)
class SagaFilter:
    """Which sagas :meth:`SagaStore.list_sagas` returns, newest first, a page at a time.

    ``cursor`` is the opaque ``next_cursor`` of the previous page (keyset pagination: a page
    costs the same however deep it is, and sagas created meanwhile never shift a page).
    """

    status: SagaStatus | None = None
    needs_attention: bool | None = None
    updated_before: float | None = None  # wall-clock seconds: last changed before this
    id_prefix: str | None = None  # only sagas whose id starts with this (a search box)
    limit: int = 100
    cursor: str | None = None

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError("limit must be at least 1")


@dataclass(frozen=True, slots=True)
class SagaEntry:
    """A saga as an operator sees it: its record, who holds (or last held) it, what people did.

    ``owner`` is the worker holding the saga's lease while ``lease_until`` lies ahead; a worker
    that finished a saga stays its ``owner`` (with no lease). Stores without workers hold none.
    """

    record: SagaRecord
    owner: str | None = None
    lease_until: float | None = None
    actions: tuple[OperatorAction, ...] = ()


@dataclass(frozen=True, slots=True)
class SagaPage:
    entries: list[SagaEntry]
    next_cursor: str | None  # None: this was the last page


@dataclass(frozen=True, slots=True)
class Repair:
    """What an operator action changes, applied atomically with its :class:`OperatorAction`.

    The change applies only if the saga's status is in ``expect`` at that moment (else
    ConflictError, and nothing is written). Unlike :meth:`SagaStore.update` it may set any
    status (a person who settled a saga by hand may close it) and it is not fenced: it
    releases (``release``) the saga's lease, so the worker holding it can write nothing more (its
    fenced writes are refused) and the next claim takes the saga as the log now says.
    ``steps`` are upserted like an update's.
    """

    expect: frozenset[SagaStatus]
    status: SagaStatus | None = None
    reason: str | None = None
    needs_attention: bool | None = None  # False also clears the attention reason
    steps: tuple[StepRecord, ...] = ()
    release: bool = True


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
