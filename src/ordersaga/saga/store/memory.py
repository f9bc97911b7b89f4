"""An in-memory saga log: the same semantics as the SQL stores, without durability.

Used for ``--no-durability`` benchmarks and for tests of the engine. Each ``create``/``update``
counts as one write in one commit, as if every call committed on its own. Values go through JSON
like in the SQL stores, so a record read back is a fresh copy that callers may not corrupt.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ordersaga.clock import Clock, SystemClock
from ordersaga.errors import ConflictError, StorageError
from ordersaga.protocol.messages import Phase
from ordersaga.saga.outcome import compacted_of
from ordersaga.saga.store.base import (
    PruneStats,
    SagaRecord,
    SagaStatus,
    SagaStore,
    StepRecord,
    StoreStats,
)
from ordersaga.saga.store.model import (
    COMPACTED_PREFIX,
    CreateWrite,
    Head,
    StepRow,
    check_update,
    compacted_input,
    input_of,
    make_create,
    make_update,
)
from ordersaga.saga.store.operator import OperatorAction, Repair, SagaEntry, SagaFilter, SagaPage


@dataclass(slots=True)
class _Saga:
    create: CreateWrite
    head: Head
    seq: int
    # (step, phase) -> (ordinal of first insertion, row); the ordinal keeps a stable order.
    steps: dict[tuple[str, Phase], tuple[int, StepRow]] = field(default_factory=dict)

    def record(self) -> SagaRecord:
        ordered = sorted(self.steps.values(), key=lambda item: (item[1].started_at, item[0]))
        input, compacted = input_of(self.create.input)
        return SagaRecord(
            self.create.saga_id,
            self.create.definition,
            input,
            self.create.fingerprint,
            self.head.status,
            tuple(row.to_record() for _, row in ordered),
            self.head.reason,
            self.head.needs_attention,
            self.create.at,
            self.head.updated_at,
            compacted,
            self.head.attention_reason,
        )

    def prunable(self, before: float) -> bool:
        head = self.head
        return (
            head.status.terminal
            and not head.needs_attention
            and head.updated_at < before
            and not self.create.input.startswith(COMPACTED_PREFIX)
        )


class MemoryStore(SagaStore):
    """A saga log in a dict; insertion order is creation order."""

    def __init__(self, *, clock: Clock | None = None) -> None:
        self.stats = StoreStats()
        self._clock = clock or SystemClock()
        self._sagas: dict[str, _Saga] = {}
        self._ordinals = itertools.count()
        self._closed = False
        self._actions: dict[str, list[OperatorAction]] = {}
        self._swept: dict[str, set[str]] = {}

    def _upsert(self, saga: _Saga, rows: Sequence[StepRow]) -> None:
        for row in rows:
            key = (row.step, row.phase)
            previous = saga.steps.get(key)
            ordinal = previous[0] if previous is not None else next(self._ordinals)
            saga.steps[key] = (ordinal, row)

    def _count_write(self) -> None:
        if self._closed:
            raise StorageError("the saga store is closed")
        self.stats.writes += 1
        self.stats.commits += 1

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
        write = make_create(
            saga_id, definition, input, fingerprint, status, reason, self._clock.time()
        )
        self._count_write()
        existing = self._sagas.get(saga_id)
        if existing is not None:
            return existing.record(), False
        self._sagas[saga_id] = _Saga(write, Head.of_create(write), len(self._sagas) + 1)
        return write.record(), True

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
        # Nobody holds a lease here (no claims): an update fenced by an owner is refused.
        write = make_update(
            saga_id,
            steps,
            status,
            reason,
            needs_attention,
            self._clock.time(),
            owner,
            input,
            attention_reason,
        )
        self._count_write()
        saga = self._sagas.get(saga_id)
        if saga is None:
            check_update(saga_id, None, write.status)  # raises: unknown saga
            return
        saga.head.apply(write, saga_id)
        if write.input is not None:
            saga.create = saga.create._replace(input=write.input)
        self._upsert(saga, write.steps)

    async def load(self, saga_id: str) -> SagaRecord | None:
        saga = self._sagas.get(saga_id)
        return None if saga is None else saga.record()

    async def unfinished(self) -> list[SagaRecord]:
        return [s.record() for s in self._sagas.values() if not s.head.status.terminal]

    async def scan(self, batch_size: int = 500) -> AsyncIterator[SagaRecord]:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        # A snapshot of the ids: sagas created during the scan may or may not be seen.
        ids = list(self._sagas)
        for start in range(0, len(ids), batch_size):
            for saga_id in ids[start : start + batch_size]:
                yield self._sagas[saga_id].record()

    async def count_by_status(self) -> dict[SagaStatus, int]:
        counts = dict.fromkeys(SagaStatus, 0)
        for saga in self._sagas.values():
            counts[saga.head.status] += 1
        return counts

    async def list_sagas(self, query: SagaFilter) -> SagaPage:
        after = None if query.cursor is None else int(query.cursor)  # see sqlops.cursor_value
        picked: list[_Saga] = []
        for saga in reversed(self._sagas.values()):  # newest first
            if after is not None and saga.seq >= after:
                continue
            head = saga.head
            if (
                (query.status is not None and head.status is not query.status)
                or (
                    query.needs_attention is not None
                    and head.needs_attention != query.needs_attention
                )
                or (query.updated_before is not None and head.updated_at >= query.updated_before)
                or (query.id_prefix and not saga.create.saga_id.startswith(query.id_prefix))
            ):
                continue
            if len(picked) == query.limit:
                return SagaPage([self._entry(s) for s in picked], str(picked[-1].seq))
            picked.append(saga)
        return SagaPage([self._entry(s) for s in picked], None)

    async def inspect(self, saga_id: str) -> SagaEntry | None:
        saga = self._sagas.get(saga_id)
        return None if saga is None else self._entry(saga)

    async def operator_actions(self) -> list[OperatorAction]:
        return sorted((a for done in self._actions.values() for a in done), key=lambda a: a.at)

    async def repair(self, saga_id: str, change: Repair, action: OperatorAction) -> SagaEntry:
        self._count_write()
        saga = self._sagas.get(saga_id)
        if saga is None:
            raise ConflictError(f"unknown saga {saga_id!r}")
        head = saga.head
        if head.status not in change.expect:
            raise ConflictError(f"saga {saga_id!r} is {head.status.value}")
        now = self._clock.time()
        head.status = change.status or head.status
        head.reason = head.reason if change.reason is None else change.reason
        if change.needs_attention is not None:
            head.needs_attention = change.needs_attention
            head.attention_reason = head.attention_reason if change.needs_attention else None
        head.updated_at = now
        head.version += 1
        self._upsert(saga, [StepRow.of(step) for step in change.steps])
        stamped = OperatorAction(saga_id, action.action, action.who, action.note, now)
        self._actions.setdefault(saga_id, []).append(stamped)
        return self._entry(saga)

    def _entry(self, saga: _Saga) -> SagaEntry:
        actions = tuple(self._actions.get(saga.create.saga_id, ()))
        return SagaEntry(saga.record(), actions=actions)

    async def prune(
        self, before: float, *, batch_size: int = 500, dry_run: bool = False
    ) -> PruneStats:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        sagas = steps = 0
        for saga in self._sagas.values():
            if not saga.prunable(before):
                continue
            sagas += 1
            steps += len(saga.steps)
            if not dry_run:
                kept = compacted_input(compacted_of(saga.record()))
                saga.create = saga.create._replace(input=kept)
                saga.steps.clear()
        return PruneStats(sagas, steps)

    async def sweep(
        self,
        name: str,
        before: float,
        visit: Callable[[Sequence[str]], Awaitable[None]],
        *,
        batch_size: int = 500,
        dry_run: bool = False,
    ) -> int:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        swept = self._swept.setdefault(name, set())
        finished = await self.decided(list(self._sagas), before)
        due = [i for i in self._sagas if i in finished and i not in swept]
        for start in range(0, len(due), batch_size):
            batch = due[start : start + batch_size]
            await visit(batch)
            if not dry_run:
                swept.update(batch)
        return len(due)

    async def decided(self, saga_ids: Sequence[str], before: float) -> set[str]:
        found = set()
        for saga_id in saga_ids:
            saga = self._sagas.get(saga_id)
            head = None if saga is None else saga.head
            if head and head.status.terminal and not head.needs_attention:
                found.update([saga_id] if head.updated_at < before else [])
        return found

    async def close(self) -> None:
        self._closed = True
