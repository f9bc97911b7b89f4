"""`ordersaga chaos`: a soak that kills the orchestrator at random instants, then proves it held.

What it does, all of it derived from ``--seed``::

    generate a workload  (CHAOS_DIR/orders.txt: contended items, every refusal, invalid and
                          malformed lines, resubmissions; the world in CHAOS_DIR/world.json)
    loop                 spawn `ordersaga run` with the same arguments every time, SIGKILL it at
                          a random instant (while it starts, while it recovers, while it runs),
                          until --kills kills have landed
    finish               one more run, left to complete
    audit                the invariants of CONTRACT.md section 6 on the data dir (in process)
    check                the final run printed exactly one outcome line per request, in input
                          order, for the right order ids; every line a killed run printed is
                          the same in the final run (a decided order never changes its outcome);
                          invalid lines and reused ids failed; a resubmission got its original's
                          outcome; every run ended by the kill or with exit status 0/65
    report               orders, outcomes, faults injected per class (summed over every run, the
                          killed ones included, from their ``--stats-file`` snapshots), kills by
                          phase, retries and compensations per order, violations, orders/s

Any violation makes the command exit 1. The workload, the fault seed and the kill plan are
reproducible; the instants a kill lands at depend on the machine's speed, and so, at
``--concurrency`` above 1, can which of several contending orders win.

The chaos dir (``--data-dir``, default ``./chaos-data``) holds the workload, the data dir
(``data/``), and each run's stdout/stderr (``runs/``). An existing chaos dir is wiped first; any
other existing, non-empty directory is refused. It is removed after a passing soak unless
``--keep``; after a failing one it is always kept, for inspection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import IO, Any, TextIO

from ordersaga.errors import ConfigError, OrderSagaError
from ordersaga.local.datadir import DataDir
from ordersaga.orders.demo import demo_world
from ordersaga.orders.world import World, parse_world
from ordersaga.proving.audit import AuditReport, audit_data_dir
from ordersaga.proving.chaos_check import ChaosReport, RunRecord, check_outcomes
from ordersaga.proving.generate import GeneratedLine, Mix, generate_workload
from ordersaga.saga.store import open_store

MARKER = "chaos.json"
#: Every kind of line, and resubmissions of both sorts on top of the default mix.
CHAOS_MIX = Mix(resubmit_same=0.02, resubmit_different=0.01)
HOT_ITEMS = ("GPU", "CONSOLE")
HOT_SHARE = 0.05
#: How a kill is aimed: (mode, weight). See :class:`KillPlan`.
KILL_MODES = (("startup", 0.15), ("recovery", 0.25), ("running", 0.60))
POLL = 0.005  # seconds between looks at a running child


@dataclass(frozen=True, slots=True)
class ChaosOptions:
    orders: int = 10_000
    fault_rate: float = 0.2
    kills: int = 20
    seed: int = 1
    concurrency: int = 32
    data_dir: Path = Path("./chaos-data")
    keep: bool = False
    #: A run whose output and counters stay unchanged this long is reported as hung and killed.
    stall_timeout: float = 300.0
    #: After every N-th kill, `ordersaga prune --older-than 0s` runs alongside the next run
    #: (while it starts and recovers); 0: never.
    prune_every: int = 0

    def __post_init__(self) -> None:
        if self.orders < 1 or self.concurrency < 1 or self.kills < 0 or self.prune_every < 0:
            raise ConfigError("chaos: --orders and --concurrency must be >= 1, --kills >= 0")
        if not 0.0 <= self.fault_rate <= 1.0:
            raise ConfigError("chaos: --fault-rate must be within [0, 1]")


@dataclass(frozen=True, slots=True)
class KillPlan:
    """Where one kill is aimed.

    ``startup``: ``delay`` seconds after the spawn (the interpreter starting, the databases
    opening, recovery, the first outcomes). ``recovery``: ``delay`` seconds after the run
    reports it is recovering. ``running``: ``delay`` seconds after the run printed ``share``
    times an even share of the outcome lines still undecided (an even share: those lines
    divided by the running kills left plus one), so the kills spread over the whole stream.
    """

    mode: str
    delay: float
    share: float = 0.0


def chaos_world(orders: int) -> World:
    """The demo world with every stock scaled to the workload (C stays out of stock)."""
    data = demo_world().to_json()
    scale = max(1, orders // 1000)
    for spec in data["items"].values():
        spec["stock"] *= scale
    return parse_world(data, source="chaos world")


def prepare_chaos_dir(root: Path) -> None:
    """Empty ``root`` for a new soak: only a chaos dir (or an empty dir) may be wiped."""
    if root.exists():
        if not root.is_dir():
            raise ConfigError(f"chaos: {root} exists and is not a directory")
        if (root / MARKER).is_file():
            shutil.rmtree(root)
        elif any(root.iterdir()):
            raise ConfigError(
                f"chaos: {root} exists and is not a chaos dir (no {MARKER}); refusing to wipe it"
                " - pass another --data-dir"
            )
    try:
        (root / "runs").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"chaos: cannot create {root}: {exc.strerror}") from exc


def write_workload(root: Path, options: ChaosOptions) -> list[GeneratedLine]:
    world = chaos_world(options.orders)
    (root / "world.json").write_text(json.dumps(world.to_json(), indent=2) + "\n", "utf-8")
    workload = list(
        generate_workload(
            options.orders,
            seed=options.seed,
            world=world,
            mix=CHAOS_MIX,
            hot_items=HOT_ITEMS,
            hot_share=HOT_SHARE,
        )
    )
    with (root / "orders.txt").open("w", encoding="utf-8") as f:
        for generated in workload:
            f.write(generated.line + "\n")
    return workload


def kill_plans(options: ChaosOptions) -> list[KillPlan]:
    """The seeded kill plan (see :class:`KillPlan`)."""
    rng = random.Random(f"ordersaga-chaos-kills-{options.seed}")
    modes = [m for m, _ in KILL_MODES]
    weights = [w for _, w in KILL_MODES]
    plans = []
    for _ in range(options.kills):
        mode = rng.choices(modes, weights)[0]
        if mode == "startup":
            plans.append(KillPlan(mode, rng.uniform(0.0, 0.6)))
        elif mode == "recovery":
            plans.append(KillPlan(mode, rng.uniform(0.0, 0.01)))
        else:
            plans.append(KillPlan(mode, rng.uniform(0.0, 0.05), rng.uniform(0.0, 2.0)))
    return plans


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


def run_chaos(options: ChaosOptions, log: Callable[[str], None]) -> ChaosReport:
    """Run the soak described in the module docstring; return its report."""
    started = time.monotonic()
    root = options.data_dir
    prepare_chaos_dir(root)
    settings = {f.name: getattr(options, f.name) for f in fields(options)}
    settings["data_dir"] = str(root)
    (root / MARKER).write_text(json.dumps({"chaos": 1, "options": settings}, indent=2), "utf-8")
    workload = write_workload(root, options)
    requests = sum(g.order_id is not None for g in workload)
    log(
        f"chaos: {len(workload)} lines ({requests} requests) in {root / 'orders.txt'};"
        f" {options.kills} kills planned"
    )
    supervisor = Supervisor(root, options, requests, log)
    plans = kill_plans(options)
    landed = misses = 0
    pruner: subprocess.Popen[bytes] | None = None
    prunes: list[str] = []  # the failures
    # A run may end before its kill lands (a short workload, a fast machine): the kill is then
    # aimed again, sooner, a bounded number of times.
    for _ in range(3 * options.kills + 3):
        if landed == options.kills:
            break
        plan = plans[landed]
        plan = replace(plan, delay=plan.delay / 2**misses, share=plan.share / 2**misses)
        running_left = sum(p.mode == "running" for p in plans[landed:])
        record = supervisor.run_killed(plan, running_left)
        if record.stalled:
            break
        landed += record.killed
        misses = 0 if record.killed else misses + 1
        _collect(pruner, prunes)
        pruner = None
        if options.prune_every and record.killed and landed % options.prune_every == 0:
            pruner = supervisor.start_prune()  # alongside the next run
    final = supervisor.run_to_end()
    _collect(pruner, prunes)
    data_dir = root / "data"
    unaudited = None
    try:
        audit = asyncio.run(audit_data_dir(data_dir))
        statuses = asyncio.run(logged_statuses(data_dir))
    except OrderSagaError as exc:  # e.g. no run got as far as initialising the data dir
        audit, statuses = AuditReport(), {}
        unaudited = f"the data dir could not be audited: {exc}"
    report = check_outcomes(
        workload,
        supervisor.runs,
        final,
        audit,
        statuses,
        planned_kills=options.kills,
        elapsed=time.monotonic() - started,
    )
    if unaudited:
        report.violations.append(unaudited)
    report.prunes = len(prunes)
    report.violations += [p for p in prunes if p]
    report.settings = settings
    if report.ok and not options.keep:
        shutil.rmtree(root, ignore_errors=True)
        report.kept = False
    return report


def _collect(pruner: subprocess.Popen[bytes] | None, prunes: list[str]) -> None:
    """Wait for a background prune; note an empty string, or what went wrong."""
    if pruner is None:
        return
    _, err = pruner.communicate()
    failed = pruner.returncode != 0
    detail = err.decode(errors="replace").strip()
    prunes.append(f"prune alongside a run exited {pruner.returncode}: {detail}" if failed else "")


async def logged_statuses(data_dir: Path) -> dict[str, str]:
    """Every saga's status in the data dir's saga log."""
    store = await open_store(DataDir(data_dir).locations().store_url)
    try:
        return {record.saga_id: record.status.value async for record in store.scan(2000)}
    finally:
        await store.close()


def print_report(report: ChaosReport, out: TextIO, *, as_json: bool) -> None:
    if as_json:
        out.write(json.dumps(report.to_json(), indent=2, sort_keys=True) + "\n")
    else:
        out.write("\n".join(report.text_lines()) + "\n")
    out.flush()
