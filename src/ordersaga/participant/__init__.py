"""The participant kit: write a service a saga can call safely, without touching the engine.

Import from here, not from the private modules: they may move, this front door stays.

A participant owns its database and answers commands under idempotency keys
(``<saga id>:<step>:<phase>``). The kit gives it, for free, what every participant must have:

* **idempotency records** — each command's reply is stored in the same transaction as its
  effects; a repeat of the key gets the stored reply, another request under the key ``conflict``;
* **optimistic locking** — a command reads (its :class:`Action`'s ``decide`` returns a
  :class:`Plan` of :class:`Write` statements), then writes with compare-and-swap on versions,
  and is decided again when it loses a race (:class:`LockingPolicy`);
* **tombstones** — :class:`Lifecycle` is the resource's state machine; compensating a step the
  service never saw leaves a tombstone, so the step arriving late is refused;
* **probes** — the engine asks what became of a key (applied, refused, unknown);
* **its HTTP app** — :func:`create_app` serves any participant over HTTP (FastAPI, loaded on
  first use), which :class:`ordersaga.saga.HttpTransport` calls.

Subclass :class:`KitService` (name, DDL, lifecycle, actions), validate payloads with
:mod:`ordersaga.participant.fields`, and pass the opened service to a transport. A whole
example, a trip's flight, hotel, car and charge desks: ``examples/trip_saga.py``.

The kit never imports the engine (:mod:`ordersaga.saga`), nor the engine the kit: they share
only :mod:`ordersaga.protocol`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ordersaga.db import Database, Row, Tx, open_database
from ordersaga.participant import fields
from ordersaga.participant.fields import BadPayload
from ordersaga.participant.kit import CommandRunner
from ordersaga.participant.lifecycle import Effects, Lifecycle
from ordersaga.participant.options import KitStats, LockingPolicy, RunnerOptions
from ordersaga.participant.plan import Action, Plan, Reader, Write
from ordersaga.participant.service import KitService
from ordersaga.protocol.messages import Command, KeyState, Phase, Probe, Reply, ReplyStatus
from ordersaga.protocol.participant import Participant

if TYPE_CHECKING:
    from ordersaga.participant.http import create_app

__all__ = [
    # Writing a participant
    "Action",
    "BadPayload",
    "Effects",
    "KitService",
    "Lifecycle",
    "Plan",
    "Reader",
    "Write",
    "fields",
    # Running it
    "CommandRunner",
    "KitStats",
    "LockingPolicy",
    "RunnerOptions",
    "create_app",
    # Its database
    "Database",
    "Row",
    "Tx",
    "open_database",
    # The protocol it speaks
    "Command",
    "KeyState",
    "Participant",
    "Phase",
    "Probe",
    "Reply",
    "ReplyStatus",
]


def __getattr__(name: str) -> Any:
    """Import the HTTP app (and FastAPI with it) the first time it is asked for."""
    if name != "create_app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from ordersaga.participant.http import create_app

    globals()[name] = create_app
    return create_app
