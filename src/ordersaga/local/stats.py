"""Live run counters in a JSON file (``ordersaga run --stats-file PATH``), for a watching process.

The file is rewritten atomically (written aside, then renamed over the old one) when the run
enters a new phase and every ``interval`` seconds in between, so a reader always finds one whole
snapshot, and a run killed at any instant leaves its last one behind. ``ordersaga chaos`` sums the
last snapshots of all the runs it killed and restarted; the phase tells where a kill landed.

A snapshot (every count covers this process only, since it started)::

    {"pid": int, "phase": "opening"|"recovering"|"running"|"draining"|"done"|"aborted",
     "elapsed": float,
     "orders": {"requests", "confirmed", "failed", "rejected", "replayed", "mismatched",
                "unreadable", "resumed"},
     "sagas": {"started", "resumed", "confirmed", "failed", "compensations", "needs_attention"},
     "calls": {"calls", "attempts", "retries", "probes", "unknown"},
     "faults": {"request_lost": int, ...} | null,   (null: no fault injection)
     "late": {"replayed", "refused", "tombstoned"} | null}
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ordersaga.errors import ConfigError
from ordersaga.local.pipeline import Counts
from ordersaga.local.runtime import Runtime

PHASES = ("opening", "recovering", "running", "draining", "done", "aborted")


@dataclass(slots=True)
class RunStats:
    """Writes snapshots of a run's counters to ``path`` (does nothing when ``path`` is None)."""

    path: Path | None
    interval: float = 0.25
    phase: str = "opening"
    runtime: Runtime | None = None
    counts: Counts | None = None
    started: float = field(default_factory=time.monotonic)
    _written: bool = False

    def attach(self, runtime: Runtime, counts: Counts) -> None:
        self.runtime, self.counts = runtime, counts

    def enter(self, phase: str) -> None:
        """Move to ``phase`` and write a snapshot at once."""
        assert phase in PHASES, phase
        self.phase = phase
        self.write()

    def snapshot(self) -> dict[str, Any]:
        counts = self.counts or Counts()
        snapshot: dict[str, Any] = {
            "pid": os.getpid(),
            "phase": self.phase,
            "elapsed": round(time.monotonic() - self.started, 3),
            "orders": {
                "requests": counts.requests,
                "confirmed": counts.confirmed,
                "failed": counts.failed,
                "rejected": counts.rejected,
                "replayed": counts.replayed,
                "mismatched": counts.mismatched,
                "unreadable": counts.unreadable,
                "resumed": counts.resumed,
            },
            "sagas": None,
            "calls": None,
            "faults": None,
            "late": None,
        }
        if self.runtime is not None:
            engine = self.runtime.engine
            calls = engine.caller.stats
            snapshot["sagas"] = asdict(engine.stats)
            snapshot["calls"] = {**asdict(calls), "retries": calls.retries}
            injector = self.runtime.injector
            if injector is not None:
                snapshot["faults"] = dict(injector.counts)
                snapshot["late"] = {
                    "replayed": injector.late_replayed,
                    "refused": injector.late_refused,
                    "tombstoned": injector.late_tombstoned,
                }
        return snapshot

    def write(self) -> None:
        """Replace the file with a fresh snapshot.

        The first write failing is a :class:`ConfigError` (a bad path: the run does not start);
        a later failure (a full disk, say) only costs that snapshot, never the run.
        """
        if self.path is None:
            return
        text = json.dumps(self.snapshot(), sort_keys=True)
        # No fsync: the file has to survive the death of this process, not of the machine.
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(text + "\n", encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as exc:
            if not self._written:
                raise ConfigError(f"cannot write the stats file {self.path}: {exc}") from exc
            return
        self._written = True

    @contextlib.asynccontextmanager
    async def periodic(self) -> AsyncIterator[None]:
        """Write a snapshot every ``interval`` seconds while the block runs."""
        if self.path is None:
            yield
            return

        async def tick() -> None:
            while True:
                await asyncio.sleep(self.interval)
                self.write()

        task = asyncio.create_task(tick(), name="ordersaga-stats-file")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
