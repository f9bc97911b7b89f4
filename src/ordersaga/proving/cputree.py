"""The CPU of a whole benchmark setup: this process, its child processes, and the PostgreSQL
backends serving the setup's databases.

A distributed variant spends most of its CPU outside the bench process (the services, the
workers, the database server), so the bench's own ``process_time`` hides the real cost. A
:class:`CpuTree` adds it up from ``/proc/<pid>/stat`` (``utime + stime`` of the whole thread
group):

- this process: :func:`time.process_time` (every thread);
- the child processes the variant started (their pids, asked for at every sample, so a
  restarted worker counts too);
- the PostgreSQL backends whose ``datname`` is one of the setup's databases, found in
  ``pg_stat_activity`` (the server must be local: its backends' ``/proc`` entries are read).

Processes are sampled every ``interval`` seconds and once more at the end; a process seen for
the first time after the first sample started during the run and counts from zero. A backend
that exits between two samples loses at most one interval of its CPU (pools keep their
connections for the whole run, so this is rare). A pid is keyed with its start time, so a reused
pid is a new process. The sampling itself runs in this process and is counted, as it should be.

``by_process`` splits the total: ``"bench"`` (this process), each child under its name (when
``children`` returns a mapping of pid to name; a restarted child adds up under its name), and
the backends of each database under ``"pg <label>"`` (``databases`` may map a database to a
shorter label).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from urllib.parse import urlsplit

import asyncpg

__all__ = ["CpuTree", "database_of", "process_cpu"]

_TICK = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0
_LOCAL_HOSTS = ("", "localhost", "127.0.0.1", "::1")


def process_cpu(pid: int) -> tuple[int, float] | None:
    """``(start time in ticks since boot, CPU seconds)`` of process ``pid``; None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            raw = stat.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = raw[raw.rfind(b")") + 2 :].split()
    try:
        utime, stime, started = int(fields[11]), int(fields[12]), int(fields[19])
    except (IndexError, ValueError):
        return None
    return started, (utime + stime) / _TICK


def database_of(url: str) -> str:
    """The database name of a ``postgresql://`` URL."""
    return urlsplit(url).path.lstrip("/")


class CpuTree:
    """Async context manager: the CPU seconds of the setup spent inside the block (``seconds``).

    ``children`` returns the pids of the setup's processes (called at every sample), or a
    mapping of pid to name; ``pg_url`` (any database on the server) and ``databases`` (or a
    mapping of database to label) name the backends to count.
    """

    def __init__(
        self,
        children: Callable[[], Iterable[int] | Mapping[int, str]] = tuple,
        pg_url: str | None = None,
        databases: Sequence[str] | Mapping[str, str] = (),
        interval: float = 0.25,
    ) -> None:
        self._children = children
        self._pg_url = pg_url if databases else None
        self._databases = list(databases)
        self._labels = (
            dict(databases) if isinstance(databases, Mapping) else {d: d for d in databases}
        )
        self._names: dict[tuple[int, int], str] = {}  # (pid, start) -> its process's name
        self._interval = interval
        self._admin: asyncpg.Connection | None = None
        self._first: dict[tuple[int, int], float] = {}  # (pid, start) -> CPU at first sight
        self._last: dict[tuple[int, int], float] = {}
        self._backends: set[tuple[int, int]] = set()
        self._sampled = False
        self._own = 0.0
        self._task: asyncio.Task[None] | None = None
        self.seconds = 0.0
        #: ``seconds`` per process name (see the module docstring).
        self.by_process: dict[str, float] = {}
        #: The PostgreSQL backends counted (None: no PostgreSQL, or a server not on this host).
        self.pg_backends: int | None = None

    async def __aenter__(self) -> CpuTree:
        if self._pg_url is not None and urlsplit(self._pg_url).hostname in _LOCAL_HOSTS:
            self._admin = await asyncpg.connect(self._pg_url)
            self.pg_backends = 0
        self._own = time.process_time()
        await self._sample()
        self._sampled = True
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._task is not None:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            if exc is None:
                await self._sample()
                own = time.process_time() - self._own
                others = sum(self._last[key] - self._first[key] for key in self._last)
                self.seconds = own + others
                self.by_process = {"bench": own}
                for key, last in self._last.items():
                    name = self._names.get(key, f"pid {key[0]}")
                    self.by_process[name] = self.by_process.get(name, 0.0) + last - self._first[key]
                if self.pg_backends is not None:
                    self.pg_backends = len(self._backends)
        finally:
            if self._admin is not None:
                await self._admin.close()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self._sample()

    async def _sample(self) -> None:
        children = self._children()
        names = dict(children) if isinstance(children, Mapping) else {}
        pids = set(children)
        backends: set[int] = set()
        if self._admin is not None:
            rows = await self._admin.fetch(
                "SELECT pid, datname FROM pg_stat_activity WHERE datname = ANY($1::text[])",
                self._databases,
            )
            backends = {int(row["pid"]) for row in rows}
            for row in rows:
                names[int(row["pid"])] = f"pg {self._labels.get(row['datname'], row['datname'])}"
        for pid in pids | backends:
            seen = process_cpu(pid)
            if seen is None:
                continue
            key = (pid, seen[0])
            if key not in self._first:
                self._first[key] = seen[1] if not self._sampled else 0.0
                if pid in names:
                    self._names[key] = names[pid]
            self._last[key] = seen[1]
            if pid in backends:
                self._backends.add(key)
