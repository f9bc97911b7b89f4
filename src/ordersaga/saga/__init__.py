"""The saga engine as a library: define a saga, run it durably, recover it after a crash.

Import from here, not from the private modules: they may move, this front door stays.

* **Definitions** are inert, frozen data — :class:`SagaDefinition` of :class:`Step` values of a
  :class:`StepKind` (compensatable steps, at most one pivot, then retriable steps), each building
  an :class:`Invocation` from the :class:`SagaContext`.
* **Running** — :class:`SagaEngine` runs definitions against a store and a transport;
  :func:`recover` finishes what a crash left unfinished.
* **Stores** — the saga log behind :class:`SagaStore`, opened by URL with :func:`open_store`
  (``sqlite:///...``, ``postgresql://...``, ``memory://``).
* **Transports** — :class:`Transport` carries :class:`Command` values to participants:
  :class:`InProcessTransport`, :class:`HttpTransport`, and :class:`FaultInjector` around either.

Participants — the services a saga calls — are written with the participant kit, whose front
door is :mod:`ordersaga.participant` (the engine never imports it, and it never imports the
engine: they meet only in :mod:`ordersaga.protocol`). Test helpers are in
:mod:`ordersaga.saga.testing`. A whole example: ``examples/trip_saga.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ordersaga.clock import Clock, SystemClock
from ordersaga.errors import (
    ConflictError,
    DefinitionError,
    OrderSagaError,
    OwnershipLost,
    RequestLost,
    ResponseLost,
    StorageError,
    TransportError,
)
from ordersaga.protocol.messages import (
    Command,
    KeyState,
    Phase,
    Probe,
    Reply,
    ReplyStatus,
    fingerprint,
)
from ordersaga.protocol.participant import Participant
from ordersaga.saga.definition import Invocation, SagaContext, SagaDefinition, Step, StepKind
from ordersaga.saga.executor import SagaEngine
from ordersaga.saga.recovery import recover
from ordersaga.saga.result import DecisionCallback, EngineSettings, EngineStats, SagaResult
from ordersaga.saga.retry import RetryPolicy
from ordersaga.saga.store import (
    MemoryStore,
    PostgresSagaStore,
    SagaRecord,
    SagaStatus,
    SagaStore,
    SqliteSagaStore,
    StepRecord,
    StepStatus,
    open_store,
)
from ordersaga.transport.base import Transport
from ordersaga.transport.faults import FaultInjector, FaultSettings
from ordersaga.transport.inprocess import InProcessTransport

if TYPE_CHECKING:
    from ordersaga.transport.http import HttpSettings, HttpTransport

__all__ = [
    # Definitions
    "Invocation",
    "RetryPolicy",
    "SagaContext",
    "SagaDefinition",
    "Step",
    "StepKind",
    # Running
    "Clock",
    "DecisionCallback",
    "EngineSettings",
    "EngineStats",
    "SagaEngine",
    "SagaResult",
    "SystemClock",
    "fingerprint",
    "recover",
    # Stores
    "MemoryStore",
    "PostgresSagaStore",
    "SagaRecord",
    "SagaStatus",
    "SagaStore",
    "SqliteSagaStore",
    "StepRecord",
    "StepStatus",
    "open_store",
    # Transports and the messages they carry
    "Command",
    "FaultInjector",
    "FaultSettings",
    "HttpSettings",
    "HttpTransport",
    "InProcessTransport",
    "KeyState",
    "Participant",
    "Phase",
    "Probe",
    "Reply",
    "ReplyStatus",
    "Transport",
    # Errors
    "ConflictError",
    "DefinitionError",
    "OrderSagaError",
    "OwnershipLost",
    "RequestLost",
    "ResponseLost",
    "StorageError",
    "TransportError",
]

#: Names loaded on first use: the HTTP transport brings aiohttp, which a saga run entirely
#: in process never needs.
_LAZY = {
    "HttpSettings": "ordersaga.transport.http",
    "HttpTransport": "ordersaga.transport.http",
}


def __getattr__(name: str) -> Any:
    """Import the HTTP transport's names the first time they are asked for."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
