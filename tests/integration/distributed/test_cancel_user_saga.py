"""`ordersaga sagas cancel` of a user saga: one whose definition the operator's build never loaded.

The trip example's saga (``examples/trip_saga.py``) is unknown to ``ordersaga``: the cancel
turns it to compensating without naming its steps, and its executor — which knows them — marks
the forward steps without an outcome as unknown and compensates every one (a desk that never
saw the hold keeps a tombstone). On a SQLite log with the trip held in flight at the car desk,
and on a PostgreSQL log run by ``ordersaga worker --saga trip_saga:TRIP``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path

import pytest

from ordersaga.protocol.messages import fingerprint
from ordersaga.saga import InProcessTransport, SagaEngine, open_store
from ordersaga.saga.outcome import CANCELLED_REASON
from ordersaga.saga.store import SagaStatus
from tests.e2e.conftest import EXAMPLES, ordersaga
from tests.integration.http.conftest import free_port, get_json

from .conftest import Gate, Process
from .test_worker_user_sagas import (  # noqa: F401 (desks: a fixture)
    DESKS,
    create_trip,
    desks,
    example_env,
    wait_terminal,
)

TRIP = {"trip": "T9", "flight": "LH400", "hotel": "Ritz", "car": "Mini", "account": "ada"}


def _trip_module() -> object:
    sys.path.insert(0, str(EXAMPLES))
    try:
        import trip_saga
    finally:
        sys.path.remove(str(EXAMPLES))
    return trip_saga


def _check_cancelled(view: dict[str, object]) -> None:
    steps = {(s["step"], s["phase"]): s for s in view["steps"]}  # type: ignore[attr-defined]
    assert view["status"] == "failed" and view["cause"] == "operator"
    for desk in DESKS:  # every hold compensated: done, in flight, or never sent
        assert steps[(desk, "compensate")]["result"] == "applied"
    assert steps[("charge", "action")]["reason"] == CANCELLED_REASON
    assert [a["action"] for a in view["actions"]] == ["cancel"]  # type: ignore[attr-defined]


async def test_a_trip_held_in_flight_on_a_sqlite_log_is_cancelled_and_compensated(
    tmp_path: Path,
) -> None:
    trips = _trip_module()
    url = f"sqlite:///{tmp_path / 'log.db'}"
    async with contextlib.AsyncExitStack() as stack:
        desks = {}
        for desk in trips.DESK_TYPES:  # type: ignore[attr-defined]
            opened = await trips.open_desk(desk, tmp_path)  # type: ignore[attr-defined]
            desks[desk.name] = await stack.enter_async_context(opened)
        store = await stack.enter_async_context(await open_store(url))
        gate = Gate(InProcessTransport(desks), "car")
        engine = SagaEngine(store, gate, [trips.TRIP])  # type: ignore[attr-defined]
        request = {**TRIP, "total_cents": 123_400}
        task = asyncio.create_task(engine.start("trip", "T9", request, fingerprint(request)))
        await asyncio.wait_for(gate.reached.wait(), 10)  # flight and hotel held; car in flight

        cancel = await asyncio.to_thread(
            ordersaga, "sagas", "cancel", "T9", "--store", url, "--note", "plans changed"
        )
        assert cancel.code == 0, cancel.err
        gate.open.set()  # the car hold goes through after all
        result = await asyncio.wait_for(task, 20)
        assert result.status is SagaStatus.FAILED and result.cause == "operator"
        states = {desk: await desks[desk].state_of(f"T9:{desk}") for desk in DESKS}
        assert states == dict.fromkeys(DESKS, "released")  # the charge's: a tombstone
        row = await desks["car"].db.fetchone("SELECT available FROM stock WHERE item = 'Mini'")
        assert row is not None and row["available"] == 1  # the car is back
    shown = ordersaga("sagas", "show", "T9", "--store", url, "--json")
    assert shown.code == 0, shown.err
    view = json.loads(shown.out)
    _check_cancelled(view)
    steps = {(s["step"], s["phase"]): s for s in view["steps"]}
    assert steps[("car", "action")]["reason"] == CANCELLED_REASON  # its outcome was unknown


@pytest.mark.pg
async def test_a_worker_running_user_sagas_compensates_a_cancelled_trip(
    pg_url: str,
    desks: dict[str, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    await create_trip(pg_url, TRIP)  # no worker yet: the trip waits, running
    cancel = ordersaga("sagas", "cancel", "T9", "--store", pg_url, "--note", "plans changed")
    assert cancel.code == 0, cancel.err
    closed = f"http://127.0.0.1:{free_port()}"
    services = {"inventory": closed, "shipping": closed, "payment": closed, **desks}
    args = ["worker", "--store", pg_url, "--saga", "trip_saga:TRIP", "--poll", "0.1"]
    args += ["--services", ",".join(f"{k}={v}" for k, v in services.items()), "--grace", "1"]
    worker = Process("worker", args, tmp_path, env=example_env()).start()
    try:
        status, reason = await wait_terminal(pg_url, "T9")
    finally:
        code = worker.stop()
    assert code == 0, worker.log()
    assert status == "failed" and reason.startswith("cancelled by ")
    assert reason.endswith(": plans changed")
    shown = ordersaga("sagas", "show", "T9", "--store", pg_url, "--json")
    assert shown.code == 0, shown.err
    _check_cancelled(json.loads(shown.out))
    for desk in DESKS:  # a tombstone at each desk: a late hold would be refused
        state = get_json(f"{desks[desk]}/keys/T9:{desk}:compensate")[1]["state"]
        assert state == "applied", (desk, state)
