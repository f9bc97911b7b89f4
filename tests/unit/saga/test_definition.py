import pytest

from ordersaga.errors import DefinitionError
from ordersaga.protocol.messages import Phase, make_key
from ordersaga.saga.definition import Invocation, SagaDefinition, Step, StepKind


def call(ctx: object) -> Invocation:
    return Invocation("svc", "act", {})


C, P, R = StepKind.COMPENSATABLE, StepKind.PIVOT, StepKind.RETRIABLE


def step(name: str, kind: StepKind, comp: bool = True) -> Step:
    return Step(name, kind, call, call if comp and kind is not R else None)


def test_a_well_formed_definition_is_accepted() -> None:
    d = SagaDefinition("order", (step("a", C), step("b", C), step("p", P), step("r", R)))
    assert [s.name for s in d.forward_steps] == ["a", "b", "p"]
    assert [s.name for s in d.retriable_steps] == ["r"]


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ((), "no steps"),
        ((step("a", C, comp=False),), "needs a compensation"),
        ((step("p", P, comp=False),), "needs a compensation"),
        ((step("a", C), step("a", C)), "duplicate"),
        ((step("p", P), step("a", C)), "compensatable, then one pivot"),
        ((step("p", P), step("q", P)), "compensatable, then one pivot"),
        ((step("r", R), step("a", C)), "compensatable, then one pivot"),
        ((step("r", R),), "at least one step must be able to fail"),
        ((step("a:b", C),), "without ':'"),
        ((Step("r", R, call, call),), "never compensated"),
        ((step("a", C), Step("r", R, call, confirms="x")), "not a forward step"),
        (
            (step("a", C), Step("r", R, call, confirms="a"), Step("s", R, call, confirms="a")),
            "confirmed by two",
        ),
        ((step("a", C), Step("b", C, call, call, confirms="a")), "only a retriable"),
    ],
)
def test_inconsistent_definitions_fail_before_running(
    steps: tuple[Step, ...], message: str
) -> None:
    with pytest.raises(DefinitionError, match=message):
        SagaDefinition("order", steps)


@pytest.mark.parametrize("saga_id", ["s1", "order:with:colons", ""])
def test_a_steps_key_suffixes_make_the_protocols_keys(saga_id: str) -> None:
    plain, confirming = step("a", C), Step("r", R, call, confirms="a")
    for phase in Phase:
        assert saga_id + plain.key_suffixes[phase] == make_key(saga_id, "a", phase)
        assert saga_id + confirming.key_suffixes[phase] == make_key(saga_id, "a", phase)
    # Derived, not compared: equal steps stay equal and hash alike.
    assert step("a", C) == plain and hash(step("a", C)) == hash(plain)
    assert "key_suffixes" not in repr(plain)
