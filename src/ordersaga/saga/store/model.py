"""What every store backend shares: the write values, the transition check, record building.

A ``create`` or ``update`` call becomes a :class:`CreateWrite` or :class:`UpdateWrite` in the
caller's coroutine (JSON is serialised there, so a value that is not JSON fails in its own caller,
before anything is queued). Backends replay writes against a :class:`Head` — the mutable part of a
saga's row — with :func:`check_update` deciding whether an update is allowed, so the in-memory and
the SQL backends cannot disagree about the life cycle.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from ordersaga.errors import ConflictError
from ordersaga.protocol.messages import Phase, canonical_json, canonical_text, read_json
from ordersaga.saga.store.base import (
    ALLOWED_TRANSITIONS,
    TERMINAL,
    Attempt,
    Compacted,
    SagaRecord,
    SagaStatus,
    StepRecord,
    StepStatus,
)
from ordersaga.saga.store.records import build_saga_record
from ordersaga.slots import tuple_new

UNFINISHED = tuple(s for s in SagaStatus if not s.terminal)

#: How the ``input`` column of a compacted saga starts (see :meth:`SagaStore.prune`): it holds
#: ``["compacted", step, cause, retries, compensations]``. A live saga's input is always the
#: canonical JSON of an object (it starts with ``{``), so the two cannot be mistaken.
COMPACTED_PREFIX = "["


class StepRow(NamedTuple):
    """A :class:`StepRecord` with its result (and its trail of attempts) already serialised.

    The trail goes to its own column, ``saga_steps.trail``: a JSON array of
    :class:`~ordersaga.saga.store.base.Attempt` arrays, NULL when the record has none. (An
    immutable value; a named tuple, like the writes below: one is made per logged record.)
    """

    step: str
    phase: Phase
    status: StepStatus
    result: str
    reason: str | None
    attempts: int
    started_at: float
    ended_at: float
    trail: str | None = None

    @classmethod
    def of(cls, record: StepRecord) -> StepRow:
        phase, status, result = record.phase, record.status, record.result
        text = record.result_json
        if text is None:
            text = canonical_json(result if type(result) is dict else dict(result))
        return tuple_new(
            cls,
            (
                record.step,
                phase if type(phase) is Phase else Phase(phase),
                status if type(status) is StepStatus else StepStatus(status),
                text,
                record.reason,
                int(record.attempts),
                float(record.started_at),
                float(record.ended_at),
                trail_json(record.trail) if record.trail else None,
            ),
        )

    def to_record(self) -> StepRecord:
        return StepRecord(
            self.step,
            self.phase,
            self.status,
            json.loads(self.result),
            self.reason,
            self.attempts,
            self.started_at,
            self.ended_at,
            trail_of(self.trail),
        )


_step_row = StepRow.of
_dump_text = json.JSONEncoder(ensure_ascii=False).encode


def trail_json(trail: tuple[Attempt, ...]) -> str | None:
    """The ``trail`` column of a step record: ``[[kind, at_us, duration_us, result, error]]``.

    Times are whole microseconds (``at_us`` since the epoch). Formatted by hand: it runs once
    per step record on the engine's path, where a JSON encoder costs several times more;
    ``kind`` and ``result`` come from fixed vocabularies of plain words, and only ``error`` is
    free text (encoded as a JSON string).
    """
    if not trail:
        return None
    return (
        "["
        + ",".join(
            f'["{kind}",{int(at * 1e6)},{int(duration * 1e6)},"{result}",'
            f"{'null' if error is None else _dump_text(error)}]"
            for kind, at, duration, result, error in trail
        )
        + "]"
    )


def trail_of(text: str | None) -> tuple[Attempt, ...]:
    """The attempts a ``trail`` column holds (none for NULL: an older record)."""
    if not text:
        return ()
    return tuple(
        Attempt(kind, at / 1e6, duration / 1e6, result, error)
        for kind, at, duration, result, error in json.loads(text)
    )


class CreateWrite(NamedTuple):
    saga_id: str
    definition: str
    input: str  # canonical JSON
    fingerprint: str
    status: SagaStatus
    reason: str | None
    at: float
    plain: bool = False  # ``input`` was written by orjson: it reads back without a check

    def record(self) -> SagaRecord:
        """The record this write creates (what ``create`` returns when it inserted)."""
        return build_saga_record(
            self.saga_id,
            self.definition,
            read_json(self.input, plain=self.plain),
            self.fingerprint,
            self.status,
            (),
            self.reason,
            False,
            self.at,
            self.at,
            None,
            None,
        )


class UpdateWrite(NamedTuple):
    saga_id: str
    steps: tuple[StepRow, ...]
    status: SagaStatus | None
    reason: str | None
    needs_attention: bool | None
    at: float
    owner: str | None = None  # fencing: refused unless the saga is held by this owner
    input: str | None = None  # canonical JSON replacing the saga's input, if any
    attention_reason: str | None = None  # why, when needs_attention is True


Write = CreateWrite | UpdateWrite


def make_create(
    saga_id: str,
    definition: str,
    input: Mapping[str, Any],
    fingerprint: str,
    status: SagaStatus,
    reason: str | None,
    at: float,
) -> CreateWrite:
    text, plain = canonical_text(input if type(input) is dict else dict(input))
    return tuple_new(
        CreateWrite,
        (
            saga_id,
            definition,
            text,
            fingerprint,
            status if type(status) is SagaStatus else SagaStatus(status),
            reason,
            at,
            plain,
        ),
    )


def make_update(
    saga_id: str,
    steps: Sequence[StepRecord],
    status: SagaStatus | None,
    reason: str | None,
    needs_attention: bool | None,
    at: float,
    owner: str | None = None,
    input: Mapping[str, Any] | None = None,
    attention_reason: str | None = None,
) -> UpdateWrite:
    return tuple_new(
        UpdateWrite,
        (
            saga_id,
            tuple([_step_row(s) for s in steps]),
            status if status is None or type(status) is SagaStatus else SagaStatus(status),
            reason,
            needs_attention,
            at,
            owner,
            None
            if input is None
            else canonical_json(input if type(input) is dict else dict(input)),
            attention_reason,
        ),
    )


def check_update(saga_id: str, current: SagaStatus | None, target: SagaStatus | None) -> None:
    """Raise :class:`ConflictError` unless a saga in ``current`` may take an update to ``target``.

    ``current`` is None for an unknown saga. A finished saga takes no update at all, not even one
    that only adds step records: its log is closed.
    """
    if current is None:
        raise ConflictError(f"unknown saga {saga_id!r}")
    if current.terminal:
        raise ConflictError(f"saga {saga_id!r} is finished ({current.value}) and cannot change")
    if target is not None and target not in ALLOWED_TRANSITIONS[current]:
        raise ConflictError(
            f"saga {saga_id!r}: transition {current.value} -> {target.value} is not allowed"
        )


#: A saga's ``version`` as created. Every later change of the row bumps it, and step records
#: are only ever written with such a change: a saga at its first version has no step records.
FIRST_VERSION = 1


@dataclass(slots=True)
class Head:
    """The mutable columns of a saga row, as a batch replays its writes."""

    status: SagaStatus
    reason: str | None
    needs_attention: bool
    updated_at: float
    version: int
    owner: str | None = None  # who holds the saga's lease (PostgreSQL workers), if anyone
    input: str | None = None  # a replacement input (canonical JSON) an update brought, if any
    attention_reason: str | None = None  # why it is flagged (None while it is not)

    @classmethod
    def of_create(cls, write: CreateWrite) -> Head:
        return cls(write.status, write.reason, False, write.at, FIRST_VERSION)

    def apply(self, write: UpdateWrite, saga_id: str) -> None:
        """Check ``write`` against the current status, then apply it (or raise ConflictError)."""
        current, target = self.status, write.status
        if current in TERMINAL or (
            target is not None and target not in ALLOWED_TRANSITIONS[current]
        ):
            check_update(saga_id, current, target)  # raises, saying why
        if write.owner is not None and write.owner != self.owner:
            raise ConflictError(
                f"saga {saga_id!r} is not held by {write.owner!r} (held by {self.owner!r})"
            )
        if write.status is not None:
            self.status = write.status
        if write.reason is not None:
            self.reason = write.reason
        if write.needs_attention is not None:
            self.needs_attention = write.needs_attention
            self.attention_reason = write.attention_reason if write.needs_attention else None
        if write.input is not None:
            self.input = write.input
        self.updated_at = write.at
        self.version += 1


def step_from_row(row: Mapping[str, Any]) -> StepRecord:
    return StepRecord(
        row["step"],
        Phase(row["phase"]),
        StepStatus(row["status"]),
        json.loads(row["result"]),
        row["reason"],
        int(row["attempts"]),
        float(row["started_at"]),
        float(row["ended_at"]),
        trail_of(row.get("trail")),
    )


def compacted_input(summary: Compacted) -> str:
    """The input column of a compacted saga."""
    fields = [summary.step, summary.cause, summary.retries, summary.compensations]
    return canonical_json(["compacted", *fields])


def input_of(text: str) -> tuple[dict[str, Any], Compacted | None]:
    """A stored input column as (input, what a compacted saga kept; its input reads as empty)."""
    if text.startswith(COMPACTED_PREFIX):
        _, step, cause, retries, compensations = json.loads(text)
        return {}, Compacted(step, cause, int(retries), int(compensations))
    value: dict[str, Any] = json.loads(text)
    return value, None


def record_from_row(row: Mapping[str, Any], steps: Iterable[StepRecord]) -> SagaRecord:
    input, compacted = input_of(row["input"])
    return record_of_row(row, input, steps, compacted)


#: A stored status as its member: a dict hit, not an enum call.
_STATUSES = {status.value: status for status in SagaStatus}


def record_of_row(
    row: Mapping[str, Any],
    input: Mapping[str, Any],
    steps: Iterable[StepRecord],
    compacted: Compacted | None,
) -> SagaRecord:
    """The record of a ``sagas`` row, with its input, steps and summary given (read by the
    caller: :func:`record_from_row` reads them from the row itself)."""
    return build_saga_record(
        row["saga_id"],
        row["definition"],
        input,
        row["fingerprint"],
        _STATUSES[row["status"]],
        tuple(steps),
        row["reason"],
        bool(row["needs_attention"]),
        float(row["created_at"]),
        float(row["updated_at"]),
        compacted,
        row.get("attention_reason"),
    )
