"""Helpers for testing sagas and stores, shipped with the engine.

Primary types::

    FakeClock            a clock whose sleep advances time at once (nothing ever waits)
    TickClock            a wall clock for stores that moves one second per reading
    Ledger               an in-memory participant: stored replies per key, tombstones, refusals
    ScriptedTransport    calls ledgers directly; a test decides which requests/responses are lost
    RaisingCrashPoints   crash points that raise SimulatedCrash instead of ending the process
    SagaStoreContract    the saga-store contract suite: subclass it to test a store of your own

Nothing here imports pytest at import time; only :class:`SagaStoreContract` needs it (and
pytest-asyncio), when its tests run.
"""

from __future__ import annotations

from ordersaga.clock import FakeClock
from ordersaga.saga.testing.crash import RaisingCrashPoints, SimulatedCrash
from ordersaga.saga.testing.scripted import Ledger, ScriptedTransport
from ordersaga.saga.testing.store_contract import SagaStoreContract, TickClock

__all__ = [
    # Time
    "FakeClock",
    "TickClock",
    # Participants and transport
    "Ledger",
    "ScriptedTransport",
    # Crashes
    "RaisingCrashPoints",
    "SimulatedCrash",
    # Stores
    "SagaStoreContract",
]
