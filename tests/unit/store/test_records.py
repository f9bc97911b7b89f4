"""The engine's record builders make the same records as the public constructors."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest

from ordersaga.protocol.messages import Phase
from ordersaga.saga.store.base import (
    Attempt,
    Compacted,
    SagaRecord,
    SagaStatus,
    StepRecord,
    StepStatus,
)
from ordersaga.saga.store.records import build_saga_record, build_step_record

TRAIL = (Attempt("a", 1.0, 0.5, "lost", "timeout"), Attempt("p", 2.0, 0.1, "applied"))
STEP_ARGS = ("pay", Phase.ACTION, StepStatus.SUCCEEDED, {"id": 1}, None, 2, 1.0, 2.5, TRAIL, None)
SAGA_ARGS = (
    "s1",
    "order",
    {"user": 7},
    "f" * 64,
    SagaStatus.RUNNING,
    (StepRecord(*STEP_ARGS),),
    "why",
    True,
    1.0,
    2.0,
    Compacted("pay", "business", 1, 0),
    "look at it",
)


def test_built_records_equal_the_constructed_ones() -> None:
    for built, made in (
        (build_step_record(*STEP_ARGS), StepRecord(*STEP_ARGS)),
        (build_saga_record(*SAGA_ARGS), SagaRecord(*SAGA_ARGS)),
    ):
        assert type(built) is type(made)
        assert built == made and made == built
        assert repr(built) == repr(made)
        assert dataclasses.astuple(built) == dataclasses.astuple(made)
        assert copy.copy(built) == made
        assert pickle.loads(pickle.dumps(built)) == made
        name = dataclasses.fields(made)[0].name
        assert dataclasses.replace(built, **{name: "x"}) == dataclasses.replace(made, **{name: "x"})
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(built, name, "x")
        with pytest.raises(dataclasses.FrozenInstanceError):
            delattr(built, name)
        assert getattr(built, name) == getattr(made, name)


def test_built_records_hash_like_the_constructed_ones() -> None:
    args = (*STEP_ARGS[:3], "no result", *STEP_ARGS[4:])  # hashable: a str in place of the dict
    built, made = build_step_record(*args), StepRecord(*args)  # type: ignore[arg-type]
    assert hash(built) == hash(made)
    assert {built: 1}[made] == 1


def test_the_builders_take_every_field_in_order() -> None:
    # A new field must reach the builders too (they give no defaults).
    assert StepRecord.__match_args__ == tuple(f.name for f in dataclasses.fields(StepRecord))
    built = build_step_record(*STEP_ARGS)
    assert [getattr(built, f.name) for f in dataclasses.fields(StepRecord)] == list(STEP_ARGS)
    saga = build_saga_record(*SAGA_ARGS)
    assert [getattr(saga, f.name) for f in dataclasses.fields(SagaRecord)] == list(SAGA_ARGS)
    match saga:
        case SagaRecord(saga_id="s1", steps=(StepRecord(step="pay"),)):
            pass
        case _:
            pytest.fail("pattern matching does not see the built record")
