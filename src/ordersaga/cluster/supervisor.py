"""Child processes supervised: started in order, relayed, watched, restarted (workers), stopped
in order (see :mod:`ordersaga.cluster.up`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import aiohttp

from ordersaga.cluster.topology import SERVICES, Child, Topology, UpSettings
from ordersaga.errors import ConfigError

__all__ = ["SupervisorSettings", "supervised"]


@dataclass(frozen=True, slots=True)
class SupervisorSettings:
    """What the supervisor itself needs: where the output goes, how long to wait."""

    log_dir: Path | None = None
    startup_timeout: float = 60.0
    stop_timeout: float = 15.0  # per group (API and workers, then services)
    log_format: str = "text"

    @classmethod
    def of(cls, settings: UpSettings) -> SupervisorSettings:
        return cls(
            settings.log_dir, settings.startup_timeout, settings.stop_timeout, settings.log_format
        )


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    """Linux: the child gets SIGTERM should ``up`` die without stopping it (PR_SET_PDEATHSIG)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)


class Supervisor:
    def __init__(self, settings: SupervisorSettings, topology: Topology, err: TextIO) -> None:
        self.settings = settings
        self.topology = topology
        self.err = err
        self.stopping = False
        self.killed: list[str] = []

    @contextlib.asynccontextmanager
    async def running(
        self, stop: asyncio.Event | None = None, hurry: asyncio.Event | None = None
    ) -> AsyncIterator[None]:
        """Start the services, then the rest, each group once the one before is ready; stop
        them all (into ``killed``) on the way out. ``stop`` set during startup cuts it short."""
        stop = stop or asyncio.Event()
        try:
            services = [c for c in self.topology.children if c.name in SERVICES]
            for child in services:
                await self.start(child)
            await _until(self.wait_ready(services), stop)
            rest = [c for c in self.topology.children if c.name not in SERVICES]
            for child in rest:
                await self.start(child)
            await _until(self.wait_ready(rest), stop)
            yield
        finally:
            self.killed = await self.stop(hurry or asyncio.Event())

    def say(self, message: str) -> None:
        if self.settings.log_format == "json":
            self.err.write(_json_line("up", {"event": "message", "message": message}) + "\n")
        else:
            self.err.write(f"ordersaga up: {message}\n")
        self.err.flush()

    async def start(self, child: Child) -> None:
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        env.pop("ORDERSAGA_CRASH_AT", None)
        env.update(self.topology.env)
        log_dir = self.settings.log_dir
        output: Any = asyncio.subprocess.PIPE
        if log_dir is not None:
            output = (log_dir / f"{child.name}.log").open("ab")
        try:
            child.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "ordersaga",
                *child.args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=output,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        finally:
            if log_dir is not None:
                output.close()
        if child.proc.stdout is not None:
            child.relay = asyncio.create_task(self._relay(child, child.proc.stdout))

    async def _relay(self, child: Child, stream: asyncio.StreamReader) -> None:
        json_lines = self.settings.log_format == "json"
        while line := await stream.readline():
            text = line.decode(errors="replace").rstrip()
            if json_lines:
                self.err.write(_json_line(child.name, _as_object(text)) + "\n")
            else:
                self.err.write(f"[{child.name}] {text}\n")
            self.err.flush()

    async def wait_ready(self, children: list[Child]) -> None:
        deadline = time.monotonic() + self.settings.startup_timeout
        pending = list(children)
        async with aiohttp.ClientSession(trust_env=False) as http:
            while pending:
                for child in list(pending):
                    assert child.proc is not None
                    if child.proc.returncode is not None:
                        raise ConfigError(
                            f"{child.name} exited during startup (status"
                            f" {child.proc.returncode}); see its output above"
                        )
                    if await _ready(http, child):
                        pending.remove(child)
                if pending and time.monotonic() > deadline:
                    late = ", ".join(c.name for c in pending)
                    raise ConfigError(
                        f"not ready after {self.settings.startup_timeout:g} s: {late}"
                    )
                if pending:
                    await asyncio.sleep(0.05)

    async def watch(self, child: Child) -> None:
        """Report a child that dies; a worker is restarted (see :func:`restart_delay`)."""
        quick_deaths = 0
        while True:
            assert child.proc is not None
            started = time.monotonic()
            code = await child.proc.wait()
            if self.stopping:
                return
            hint = ""
            if child.ready_file is not None:
                hint = "; its sagas are taken over when its leases lapse"
            self.say(f"{child.name} (pid {child.proc.pid}) exited with status {code}{hint}")
            if child.ready_file is None:
                return
            ran = time.monotonic() - started
            quick_deaths = 1 if ran >= RESTART_RESET_S else quick_deaths + 1
            if not await self._restart(child, quick_deaths):
                return

    async def _restart(self, child: Child, attempt: int) -> bool:
        delay = restart_delay(attempt)
        self.say(f"restarting {child.name} in {delay:g} s (restart {attempt} in a row)")
        await asyncio.sleep(delay)
        if self.stopping:
            return False
        new_id = _renamed(child)
        await self.start(child)
        assert child.proc is not None
        if self.stopping:  # stop() began while it started: it must not outlive us
            with contextlib.suppress(ProcessLookupError):
                child.proc.send_signal(signal.SIGTERM)
            return False
        self.say(f"{child.name} restarted as worker {new_id} (pid {child.proc.pid})")
        return True

    async def stop(self, hurry: asyncio.Event) -> list[str]:
        """Stop the API and the workers, then the services; return who had to be killed."""
        self.stopping = True
        front = [c for c in self.topology.children if c.name not in SERVICES]
        back = [c for c in self.topology.children if c.name in SERVICES]
        killed: list[str] = []
        for group in (front, back):
            killed += await self._stop_group(group, hurry)
        for child in self.topology.children:
            if child.relay is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(child.relay, 2)
        return killed

    async def _stop_group(self, group: list[Child], hurry: asyncio.Event) -> list[str]:
        running = [c for c in group if c.proc is not None and c.proc.returncode is None]
        for child in running:
            assert child.proc is not None
            with contextlib.suppress(ProcessLookupError):
                child.proc.send_signal(signal.SIGTERM)
        waits = [c.proc.wait() for c in running if c.proc is not None]
        if waits:
            hurried: asyncio.Future[Any] = asyncio.ensure_future(hurry.wait())
            exited: asyncio.Future[Any] = asyncio.gather(*waits)
            await asyncio.wait(
                [exited, hurried],
                timeout=self.settings.stop_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
            hurried.cancel()
        killed = []
        for child in running:
            assert child.proc is not None
            if child.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    child.proc.kill()
                await child.proc.wait()
                killed.append(child.name)
        return killed


def _as_object(text: str) -> dict[str, Any]:
    """A child's JSON log line as it is, or any other line as a ``log`` event."""
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    return data if isinstance(data, dict) else {"event": "log", "message": text}


def _json_line(process: str, data: dict[str, Any]) -> str:
    return json.dumps({**data, "process": process}, ensure_ascii=False)


#: A worker that dies again and again waits longer each time before its restart, up to this.
RESTART_MAX_DELAY_S = 30.0


#: A worker that ran this long before dying is restarted at once again (its backoff resets).
RESTART_RESET_S = 60.0


def restart_delay(attempt: int) -> float:
    """Seconds before the ``attempt``-th restart in a row: 0.5, 1, 2, 4 ... up to 30."""
    return min(RESTART_MAX_DELAY_S, 0.5 * 2.0 ** max(0, attempt - 1))


def _renamed(child: Child) -> str:
    """Give a restarted worker an id of its own (``w1`` -> ``w1-r1``, ``w1-r2``...): the log
    then tells the dead process's leases and registration from the new one's."""
    child.restarts += 1
    at = child.args.index("--id") + 1
    child.args[at] = f"{child.name}-r{child.restarts}"
    return child.args[at]


async def _ready(http: aiohttp.ClientSession, child: Child) -> bool:
    if child.ready_file is not None:
        return child.ready_file.exists()
    assert child.health is not None
    try:
        async with http.get(child.health, timeout=aiohttp.ClientTimeout(total=1)) as response:
            return response.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


@contextlib.asynccontextmanager
async def supervised(
    topology: Topology, err: TextIO, settings: SupervisorSettings | None = None
) -> AsyncIterator[Topology]:
    """``topology`` running (ready) inside the block, stopped in order on the way out; a child
    that fails to start raises ConfigError. Its databases must exist already."""
    supervisor = Supervisor(settings or SupervisorSettings(), topology, err)
    async with supervisor.running():
        yield topology


async def _until(work: Any, stop: asyncio.Event) -> None:
    """Await ``work`` unless ``stop`` is set first (then cancel it)."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([task, stopped], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if task.done():
        task.result()
    else:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
