"""The machine a benchmark ran on: CPU model, cores, and its disk's own fsync latency.

CPU per order only compares across runs on the same kind of machine, and a durable run's latency
at concurrency 1 cannot beat the disk's fsync: both belong in the report's header.
"""

from __future__ import annotations

import math
import os
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Machine", "cpu_model", "fsync_p99"]


@dataclass(frozen=True, slots=True)
class Machine:
    cpu: str
    cores: int
    fsync_p99_s: float | None  # None: not probed

    @classmethod
    def probe(cls, directory: Path | None, samples: int = 100) -> Machine:
        return cls(cpu_model(), os.cpu_count() or 1, fsync_p99(directory, samples))

    def to_json(self) -> dict[str, Any]:
        p99 = None if self.fsync_p99_s is None else round(self.fsync_p99_s * 1000, 3)
        return {"cpu": self.cpu, "cores": self.cores, "fsync_p99_ms": p99}

    def header(self) -> str:
        fsync = "" if self.fsync_p99_s is None else f", fsync p99 {self.fsync_p99_s * 1e3:.2f} ms"
        return f"machine: {self.cpu}, {self.cores} cores{fsync}"


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), else what the platform says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def fsync_p99(directory: Path | None, samples: int = 100) -> float | None:
    """The 99th percentile (seconds) of writing 4 KiB and fsyncing it, in a scratch file in
    ``directory`` (the system's temporary directory if None): the floor of one durable commit
    on that file system. None if the directory cannot be written."""
    if samples <= 0:
        return None
    block = b"\0" * 4096
    try:
        fd, name = tempfile.mkstemp(prefix="ordersaga-fsync-", dir=directory)
    except OSError:
        return None
    took: list[float] = []
    try:
        for _ in range(samples):
            started = time.perf_counter()
            os.write(fd, block)
            os.fsync(fd)
            took.append(time.perf_counter() - started)
    except OSError:
        return None
    finally:
        os.close(fd)
        os.unlink(name)
    took.sort()
    return took[min(len(took) - 1, math.ceil(0.99 * len(took)) - 1)]
