"""Every crash point the docs name is really on the order saga's path (a recorder, no crash).

The crash tests arm points by name; a renamed or lost point would make them arm nothing. Here a
recording :class:`CrashPoints` sees the names that two faulty, serial runs of the crash stream
pass, with engines tuned so that rare paths happen too, and in which order each failed saga
undid its steps (the reverse of their order).
"""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass, field, replace
from pathlib import Path

from ordersaga.local.run import RunOptions, lines_from, run_orders
from ordersaga.local.runtime import RuntimeSettings
from ordersaga.saga.crash import CrashPoints
from ordersaga.saga.executor import EngineSettings
from ordersaga.saga.retry import ACTION_POLICY, PROBE_POLICY

CRASH_STREAM = Path(__file__).parents[2] / "e2e" / "data" / "crash_stream.txt"

STEPS = {"action": ("reserve", "ship", "pay"), "compensate": ("reserve", "ship", "pay")}
STEPS["confirm"] = ("commit", "schedule", "capture")
WRITES = ["create", "reserve.result", "ship.result", "decision.confirm", "decision.compensate"]
WRITES += ["end.failed", "end.confirmed", "attention"]
EXPECTED = {
    "saga.created",
    "compensation.during",
    "confirmation.during",
    "store.before:commit",
    "store.after:commit",
    *(f"log.{side}:{what}" for side in ("before", "after") for what in WRITES),
    *(
        f"call.{side}:{step}:{phase}"
        for side in ("before", "after")
        for phase, steps in STEPS.items()
        for step in steps
    ),
}


@dataclass(slots=True)
class Recorder(CrashPoints):
    seen: set[str] = field(default_factory=set)
    passed: list[str] = field(default_factory=list)  # every hit, in order

    def hit(self, name: str) -> None:
        self.seen.add(name)
        self.passed.append(name)

    def compensations(self) -> list[list[str]]:
        """Per compensated saga (the runs are serial), the steps undone, in the order undone."""
        sagas: list[list[str]] = []
        undone: list[str] | None = None
        for name in self.passed:
            if name == "log.after:decision.compensate":
                undone = []
            elif name == "log.before:end.failed" and undone is not None:
                sagas.append(undone)
                undone = None
            elif undone is not None and name.startswith("call.after:"):
                step, phase = name.removeprefix("call.after:").split(":")
                if phase == "compensate":
                    undone.append(step)
        return sagas


def run_stream(data: Path, recorder: Recorder, engine: EngineSettings) -> list[str]:
    settings = RuntimeSettings(data, fault_rate=0.3, seed=3, crash=recorder, engine=engine)
    out = io.StringIO()
    with CRASH_STREAM.open("rb", buffering=0) as stream:
        options = RunOptions(settings, concurrency=1)
        asyncio.run(run_orders(options, lines_from(stream), out, io.StringIO()))
    return out.getvalue().splitlines()


def test_every_documented_crash_point_is_passed(tmp_path: Path) -> None:
    recorder = Recorder()
    # Flag for attention at the first failed compensation or confirmation attempt.
    assert len(run_stream(tmp_path / "a", recorder, EngineSettings(attention_after=0.0))) == 16
    # One attempt and one probe per step: some payment's outcome stays unknown, so it is voided.
    hasty = EngineSettings(
        action_policy=replace(ACTION_POLICY, maximum_attempts=1),
        probe_policy=replace(PROBE_POLICY, maximum_attempts=1),
    )
    assert len(run_stream(tmp_path / "b", recorder, hasty)) == 16
    assert EXPECTED - recorder.seen == set()
    assert recorder.seen - EXPECTED == set()  # nothing undocumented either
    # Every failed saga undid its steps in reverse order: the last one to take effect first.
    forward = STEPS["compensate"]
    sagas = recorder.compensations()
    assert any(len(undone) >= 2 for undone in sagas), sagas
    for undone in sagas:
        assert undone == sorted(undone, key=forward.index, reverse=True), sagas
        assert len(set(undone)) == len(undone), sagas  # each step undone once
