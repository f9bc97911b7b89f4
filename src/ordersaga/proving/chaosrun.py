"""The runs of `ordersaga chaos`: `ordersaga run` spawned with the same arguments each time,
watched through its output and stats file, and SIGKILLed as its :class:`KillPlan` says (see
:mod:`ordersaga.proving.chaos`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ordersaga.proving.chaos_check import RunRecord
from ordersaga.proving.chaosplan import ChaosOptions, KillPlan

POLL = 0.005  # seconds between looks at a running child


@dataclass(slots=True)
class _Child:
    """One `ordersaga run` process and what it has printed so far."""

    proc: subprocess.Popen[bytes]
    out_path: Path
    stats_path: Path
    started: float
    out: bytearray = field(default_factory=bytearray)
    lines: int = 0  # complete lines in ``out``
    last_change: float = field(default_factory=time.monotonic)
    _reader: IO[bytes] | None = None
    _stats_mtime: float = 0.0

    def poll(self) -> None:
        """Read what the child printed since the last look; note any sign of life."""
        if self._reader is None:
            self._reader = self.out_path.open("rb")
        chunk = self._reader.read()
        now = time.monotonic()
        if chunk:
            self.out += chunk
            self.lines += chunk.count(b"\n")
            self.last_change = now
        try:
            mtime = self.stats_path.stat().st_mtime
        except FileNotFoundError:
            mtime = 0.0
        if mtime != self._stats_mtime:
            self._stats_mtime, self.last_change = mtime, now

    def phase(self) -> str:
        """The run's phase as its stats file says ("starting" before it wrote one)."""
        snapshot = read_snapshot(self.stats_path)
        return "starting" if snapshot is None else str(snapshot.get("phase"))

    def close(self) -> None:
        if self._reader is not None:
            self.poll()
            self._reader.close()
            self._reader = None


def read_snapshot(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class Supervisor:
    """Spawns `ordersaga run` with the same arguments each time, kills it as planned."""

    def __init__(
        self, root: Path, options: ChaosOptions, requests: int, log: Callable[[str], None]
    ) -> None:
        self.root = root
        self.options = options
        self.requests = requests
        self.log = log
        # One stats file for every run, so that every run gets exactly the same arguments; it is
        # read after each run ends and removed before the next one starts.
        self.stats_path = root / "run.stats.json"
        self.argv = [
            *(sys.executable, "-m", "ordersaga", "run", str(root / "orders.txt")),
            *("--world", str(root / "world.json"), "--data-dir", str(root / "data")),
            *("--fault-rate", str(options.fault_rate), "--seed", str(options.seed)),
            *("--concurrency", str(options.concurrency), "--stats-file", str(self.stats_path)),
        ]
        self.env = {k: v for k, v in os.environ.items() if k != "ORDERSAGA_CRASH_AT"}
        self.runs: list[RunRecord] = []
        self.decided = 0  # the most outcome lines a run printed: the decided prefix

    def run_killed(self, plan: KillPlan, running_left: int) -> RunRecord:
        """One run, SIGKILLed as ``plan`` says (unless it ends by itself first).

        ``running_left`` counts the ``running`` kills still to land, this one included.
        """
        undecided = self.requests - self.decided
        target = self.decided + max(1, int(plan.share * undecided / (running_left + 1)))
        # Never aim at the very end of the stream: a run that ends by itself is not a kill.
        target = min(target, self.requests - 1 - self.requests // 50)
        with self._spawn() as child:
            return self._watch(child, plan, target)

    def start_prune(self) -> subprocess.Popen[bytes]:
        """``ordersaga prune --older-than 0s`` on the data dir, in the background."""
        argv = [sys.executable, "-m", "ordersaga", "prune", "--data-dir", str(self.root / "data")]
        return subprocess.Popen(
            [*argv, "--older-than", "0s"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env,
        )

    def run_to_end(self) -> RunRecord:
        with self._spawn() as child:
            while child.proc.poll() is None:
                child.poll()
                if self._stalled(child, time.monotonic()):
                    return self._finish(child, "final", stalled=True)
                time.sleep(4 * POLL)
            return self._finish(child, "final")

    def _watch(self, child: _Child, plan: KillPlan, target: int) -> RunRecord:
        aimed_at: float | None = None
        while child.proc.poll() is None:
            child.poll()
            now = time.monotonic()
            if aimed_at is None and self._due(child, plan, target):
                aimed_at = now + plan.delay
            if aimed_at is not None and now >= aimed_at:
                phase = child.phase()
                child.proc.send_signal(signal.SIGKILL)
                return self._finish(child, plan.mode, killed_in=phase)
            if self._stalled(child, now):
                return self._finish(child, plan.mode, stalled=True)
            time.sleep(POLL)
        return self._finish(child, plan.mode)

    @contextlib.contextmanager
    def _spawn(self) -> Iterator[_Child]:
        """A new child; if the supervisor itself is interrupted, the child dies with it."""
        self.stats_path.unlink(missing_ok=True)
        out_path = self.root / "runs" / f"run-{len(self.runs) + 1:02d}.out"
        with out_path.open("wb") as out, out_path.with_suffix(".err").open("wb") as err:
            proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=self.env
            )
        child = _Child(proc, out_path, self.stats_path, time.monotonic())
        try:
            yield child
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            child.close()

    def _due(self, child: _Child, plan: KillPlan, target: int) -> bool:
        if plan.mode == "startup":
            return True
        if plan.mode == "recovery":
            return child.phase() not in ("starting", "opening")
        return child.lines >= target

    def _stalled(self, child: _Child, now: float) -> bool:
        if now - child.last_change < self.options.stall_timeout:
            return False
        child.proc.send_signal(signal.SIGKILL)
        return True

    def _finish(
        self, child: _Child, mode: str, *, killed_in: str | None = None, stalled: bool = False
    ) -> RunRecord:
        code = child.proc.wait()
        child.close()
        elapsed = time.monotonic() - child.started
        if code != -signal.SIGKILL:
            killed_in = None  # it ended by itself just before the kill
        complete = child.out[: child.out.rfind(b"\n") + 1].decode("utf-8", "replace")
        record = RunRecord(
            index=len(self.runs) + 1,
            mode=mode,
            killed=killed_in is not None,
            killed_in=killed_in,
            stalled=stalled,
            returncode=code,
            lines=complete.splitlines(),
            snapshot=read_snapshot(self.stats_path),
            elapsed=elapsed,
        )
        self.runs.append(record)
        self.decided = max(self.decided, len(record.lines))
        what = f"killed while {killed_in}" if killed_in else f"exited {code}"
        if stalled:
            what = f"no progress for {self.options.stall_timeout:.0f} s, killed"
        self.log(
            f"run {record.index:2d} ({mode}): {what} after {elapsed:.2f} s,"
            f" {len(record.lines)} lines"
        )
        return record
