"""Helpers for the crash tests: run `ordersaga run` armed or killed, audit, compare outcomes."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

from ordersaga import cli
from ordersaga.proving.audit import AuditReport, audit_data_dir

from .conftest import Result, ordersaga

#: Every outcome kind of the order saga on the demo world, one malformed line (exit 65), an
#: invalid order, a resubmission, an id reused with other content and three orders competing
#: for the last units of GPU (stock 3).
CRASH_STREAM = Path(__file__).parent / "data" / "crash_stream.txt"
EXIT_DATAERR = 65


def run(
    data: Path,
    stream: Path = CRASH_STREAM,
    *,
    concurrency: int = 1,
    fault_rate: float = 0.0,
    seed: int = 1,
    crash: str | None = None,
) -> Result:
    """`ordersaga run`, with ``crash`` armed through ORDERSAGA_CRASH_AT (never inherited)."""
    env = {"ORDERSAGA_CRASH_AT": crash or ""}
    return ordersaga(*run_args(data, stream, concurrency, fault_rate, seed), env=env)


def run_here(
    data: Path,
    stream: Path = CRASH_STREAM,
    *,
    concurrency: int = 1,
    fault_rate: float = 0.0,
    seed: int = 1,
) -> Result:
    """The same `ordersaga run` through the CLI's ``main`` in this process (no interpreter to
    start: cheaper for the runs that are not meant to die)."""
    out, err = io.StringIO(), io.StringIO()
    with (
        mock.patch.dict(os.environ, {"ORDERSAGA_CRASH_AT": ""}),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        code = cli.main(run_args(data, stream, concurrency, fault_rate, seed))
    return Result(code, out.getvalue(), err.getvalue())


def run_args(data: Path, stream: Path, concurrency: int, fault_rate: float, seed: int) -> list[str]:
    return [
        *("run", str(stream), "--data-dir", str(data), "--concurrency", str(concurrency)),
        *("--fault-rate", str(fault_rate), "--seed", str(seed)),
    ]


def audit(data: Path) -> AuditReport:
    return asyncio.run(audit_data_dir(data))


def assert_audit_ok(data: Path) -> None:
    report = audit(data)
    assert report.ok, "\n".join(map(str, report.violations[:20]))


def order_ids(lines: list[str]) -> list[str]:
    return [line.split()[1] for line in lines]


@dataclass
class Killed:
    """What a series of killed runs and the final one printed."""

    outputs: list[list[str]]  # the complete lines of each killed run
    kills: int
    final: subprocess.CompletedProcess[str]

    @property
    def lines(self) -> list[str]:
        return self.final.stdout.splitlines()


def kill_and_finish(
    argv: list[str], workdir: Path, rng: random.Random, kills: int, requests: int
) -> Killed:
    """Start ``ordersaga`` ``argv``, SIGKILL it ``kills`` times at random instants, then let it
    finish. An instant is either a random delay after the start (startup, recovery, early
    work) or a random number of outcome lines (replayed ones included) plus a random delay.
    A run that ends before its kill lands is started again with a new instant."""
    outputs: list[list[str]] = []
    landed = 0
    for attempt in range(3 * kills):
        if landed == kills:
            break
        out_path = workdir / f"killed-{attempt}.out"
        with out_path.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "ordersaga", *argv],
                stdout=out,
                stderr=subprocess.DEVNULL,
                env={**os.environ, "ORDERSAGA_CRASH_AT": ""},
            )
        by_time = rng.random() < 0.3
        delay = rng.uniform(0.0, 0.6) if by_time else rng.uniform(0.0, 0.05)
        target = 0 if by_time else rng.randrange(1, requests - requests // 10)
        aim: float | None = None
        while proc.poll() is None:
            now = time.monotonic()
            if aim is None and out_path.read_bytes().count(b"\n") >= target:
                aim = now + delay
            if aim is not None and now >= aim:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.003)
        code = proc.wait()
        text = out_path.read_bytes().decode()
        outputs.append(text[: text.rfind("\n") + 1].splitlines())
        if code == -signal.SIGKILL:
            landed += 1
        else:
            assert code in (0, EXIT_DATAERR), f"a run ended with {code}"
    final = subprocess.run(
        [sys.executable, "-m", "ordersaga", *argv],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "ORDERSAGA_CRASH_AT": ""},
    )
    return Killed(outputs, landed, final)
