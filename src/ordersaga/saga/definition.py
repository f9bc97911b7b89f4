"""Saga definitions: inert, frozen data. Only the executor runs them.

A definition is an ordered list of steps. Each step names how to build its service call from the
saga's context (input and the results of earlier steps), and has a kind:

``compensatable``
    may fail; when a later step fails, its compensation undoes it. Must have a compensation.
``pivot``
    the last step that can still fail. Its success decides the saga: from then on it can only go
    forward. Its compensation is used only when its own outcome stays unknown.
``retriable``
    after the pivot; retried until it succeeds, never compensated (so it has no compensation).

Order: compensatable steps, then at most one pivot, then retriable steps. A definition without a
pivot is decided by the success of its last compensatable step.

Secrets in the input. Only the forward steps build their calls from the whole input; once the
saga is decided, compensations and confirmations run, and a definition whose ``redact`` is set
promises they need only what ``redact(input)`` keeps. The engine writes ``redact(input)`` over
the stored input in the same atomic write as the decision, so a secret the forward steps needed
(a card number) is erased from the log as soon as no call can need it again: a resumed saga
that is not yet decided still has it, a decided one never needs it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ordersaga.errors import DefinitionError
from ordersaga.protocol.messages import Phase, make_key
from ordersaga.saga.retry import RetryPolicy
from ordersaga.slots import slot_twin


class StepKind(enum.StrEnum):
    """What a step may do when the saga goes wrong (see the module docstring)."""

    COMPENSATABLE = "compensatable"
    PIVOT = "pivot"
    RETRIABLE = "retriable"


@dataclass(frozen=True, slots=True)
class Invocation:
    """One call to a service: which service, which action, with what payload."""

    service: str
    action: str
    payload: Mapping[str, Any] = field(default_factory=dict)


_InvocationSlots = slot_twin(Invocation)
_new = object.__new__


def invocation(service: str, action: str, payload: Mapping[str, Any]) -> Invocation:
    """``Invocation(service, action, payload)`` built without the frozen ``__init__`` (see
    :mod:`ordersaga.slots`): for step builders, which make one per step call."""
    built: Any = _new(_InvocationSlots)
    built.service = service
    built.action = action
    built.payload = payload
    built.__class__ = Invocation
    made: Invocation = built  # (typed: no cast call on this path)
    return made


@dataclass(frozen=True, slots=True)
class SagaContext:
    """What a step's call builder may read: the saga's input and earlier steps' results."""

    saga_id: str
    input: Mapping[str, Any]
    results: Mapping[str, Mapping[str, Any]]


_ContextSlots = slot_twin(SagaContext)


def saga_context(
    saga_id: str, input: Mapping[str, Any], results: Mapping[str, Mapping[str, Any]]
) -> SagaContext:
    """``SagaContext(saga_id, input, results)`` built without the frozen ``__init__`` (see
    :mod:`ordersaga.slots`): the engine makes one per saga run."""
    built: Any = _new(_ContextSlots)
    built.saga_id = saga_id
    built.input = input
    built.results = results
    built.__class__ = SagaContext
    made: SagaContext = built  # (typed: no cast call on this path)
    return made


Builder = Callable[[SagaContext], Invocation]


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a saga: how to build its call, and for a forward step its compensation.

    ``action`` and ``compensation`` are pure functions of the :class:`SagaContext`: the engine
    calls them again after a crash, and each call is sent under the same idempotency key, so
    they must build the same request each time (read only the input and earlier results).
    """

    name: str
    kind: StepKind
    action: Builder
    compensation: Builder | None = None
    retry: RetryPolicy | None = None  # for the action; None takes the engine's default
    #: For a retriable step that confirms what an earlier step did: that step's name. Its calls
    #: then use the earlier step's resource key (``<saga>:<confirmed step>:confirm``).
    confirms: str | None = None
    #: Each phase's idempotency key less its saga id (``make_key("", key_name, phase)``): a
    #: call's key is the saga id and this (derived from the fields, made once per step).
    key_suffixes: Mapping[Phase, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        suffixes = {phase: make_key("", self.key_name(), phase) for phase in Phase}
        object.__setattr__(self, "key_suffixes", suffixes)

    def key_name(self) -> str:
        """The step name used in this step's idempotency keys."""
        return self.confirms or self.name


@dataclass(frozen=True, slots=True)
class SagaDefinition:
    """A named, ordered tuple of steps, checked when made (:func:`check`).

    The name is written in the saga log: an engine resuming a saga looks its definition up by
    name, so a definition keeps its name (and the meaning of its step names) across releases.
    """

    name: str
    steps: tuple[Step, ...]
    #: What of the input a decided saga keeps (see the module docstring); None keeps it all,
    #: and so does a ``redact`` that returns the very input it was given.
    redact: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None
    #: The steps that can still fail: compensatable ones and the pivot (derived from ``steps``).
    forward_steps: tuple[Step, ...] = field(init=False, repr=False, compare=False)
    #: The steps after the pivot (derived from ``steps``).
    retriable_steps: tuple[Step, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check(self)
        # Read on every step of every saga: split once (the definition never changes).
        forward = tuple(s for s in self.steps if s.kind is not StepKind.RETRIABLE)
        object.__setattr__(self, "forward_steps", forward)
        retriable = tuple(s for s in self.steps if s.kind is StepKind.RETRIABLE)
        object.__setattr__(self, "retriable_steps", retriable)

    def step(self, name: str) -> Step:
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(name)


_RANK = {StepKind.COMPENSATABLE: 0, StepKind.PIVOT: 1, StepKind.RETRIABLE: 2}


def check(definition: SagaDefinition) -> None:
    """Raise :class:`DefinitionError` when ``definition`` breaks a structural rule."""
    name = definition.name
    if not name:
        raise DefinitionError("a saga definition needs a name")
    if not definition.steps:
        raise DefinitionError(f"saga {name!r} has no steps")
    seen: set[str] = set()
    rank = 0
    for step in definition.steps:
        where = f"saga {name!r}, step {step.name!r}"
        if not step.name or ":" in step.name or any(c.isspace() for c in step.name):
            raise DefinitionError(f"{where}: a step name is non-empty, without ':' or spaces")
        if step.name in seen:
            raise DefinitionError(f"{where}: duplicate step name")
        seen.add(step.name)
        if _RANK[step.kind] < rank or (step.kind is StepKind.PIVOT and rank == 1):
            raise DefinitionError(
                f"{where}: steps must be compensatable, then one pivot, then retriable"
            )
        rank = _RANK[step.kind]
        if step.kind is not StepKind.RETRIABLE and step.compensation is None:
            # A pivot needs one too: it is used when the pivot's own outcome stays unknown.
            raise DefinitionError(f"{where}: a {step.kind} step needs a compensation")
        if step.kind is StepKind.RETRIABLE and step.compensation is not None:
            raise DefinitionError(f"{where}: a retriable step is never compensated")
        if step.confirms is not None:
            _check_confirms(definition, step, where)
    if all(s.kind is StepKind.RETRIABLE for s in definition.steps):
        raise DefinitionError(f"saga {name!r}: at least one step must be able to fail")


def _check_confirms(definition: SagaDefinition, step: Step, where: str) -> None:
    if step.kind is not StepKind.RETRIABLE:
        raise DefinitionError(f"{where}: only a retriable step confirms another step")
    targets = [s for s in definition.steps if s.name == step.confirms]
    if not targets or targets[0].kind is StepKind.RETRIABLE:
        raise DefinitionError(f"{where}: confirms {step.confirms!r}, not a forward step")
    others = [s for s in definition.steps if s.confirms == step.confirms]
    if len(others) > 1:
        raise DefinitionError(f"{where}: {step.confirms!r} is confirmed by two steps")
