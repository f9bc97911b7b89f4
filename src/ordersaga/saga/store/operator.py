"""What operators see of the saga log and do to it: listing filters and pages, an inspected
saga with its owner and the people's actions on it, and the repairs those actions apply
(:meth:`~ordersaga.saga.store.base.SagaStore.list_sagas`, ``inspect``, ``repair``)."""

from __future__ import annotations

from dataclasses import dataclass

from ordersaga.saga.store.records import SagaRecord, SagaStatus, StepRecord

__all__ = ["OperatorAction", "Repair", "SagaEntry", "SagaFilter", "SagaPage"]


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
