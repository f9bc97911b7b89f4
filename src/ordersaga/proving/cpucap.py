"""Capping processes' CPU with the Linux cgroup ``cpu`` controller (``bench --worker-cpu``).

The kernel's CFS bandwidth control lets the processes of a cgroup run at most ``quota`` µs of
CPU time per ``period`` µs, however many cores are idle: a cap of 0.25 core is 5 ms every 20 ms.
:class:`CpuCaps` makes one cgroup per name (one per worker process), moves processes into it,
and on :meth:`CpuCaps.close` moves whatever is left back to the parent cgroup and removes the
groups, so nothing outlives the benchmark.

Both hierarchies are supported, found from ``/proc/self/mountinfo`` and ``/proc/self/cgroup``:

* **v1** (a ``cgroup`` mount with the ``cpu`` option): ``cpu.cfs_period_us`` and
  ``cpu.cfs_quota_us``; throttling in ``cpu.stat`` as ``nr_periods`` / ``nr_throttled``.
* **v2** (the ``cgroup2`` mount, ``cpu`` in ``cgroup.controllers``): ``cpu.max`` ("quota
  period"), after ``+cpu`` is written to the parent's ``cgroup.subtree_control`` (which the
  kernel refuses in a non-root cgroup that holds processes itself: the "no internal processes"
  rule; the error says so).

The groups are made inside this process's own cgroup, so the limits of a container it runs in
still apply above them. Every failure to find or write the controller is a
:class:`~ordersaga.errors.ConfigError` naming the file and the reason (not root, no controller,
read-only mount): the bench prints it as one line.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from ordersaga.errors import ConfigError

__all__ = ["MIN_CORES", "PERIOD_US", "CgroupCpu", "CpuCaps", "find_cpu_cgroup"]

#: The bandwidth period: short enough that a capped process is never stopped for long at a time
#: (at 0.25 core, at most 15 ms in each 20 ms), long enough for the kernel's 1 ms minimum quota.
PERIOD_US = 20_000
#: The smallest cap: a quota of 1 ms per period (the kernel's minimum).
MIN_CORES = 1_000 / PERIOD_US


@dataclass(frozen=True, slots=True)
class CgroupCpu:
    """Where to make capped groups: ``parent`` (this process's cgroup, a directory of the cpu
    hierarchy) and the hierarchy's version (1 or 2)."""

    version: int
    parent: Path


def find_cpu_cgroup(proc: Path = Path("/proc/self")) -> CgroupCpu:
    """The cpu hierarchy this process is in (v1 preferred when both exist); ConfigError if none."""
    try:
        mountinfo = (proc / "mountinfo").read_text(encoding="utf-8")
        own = (proc / "cgroup").read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--worker-cpu: cannot read the cgroups of this process: {exc}") from None
    v1_mount = v2_mount = None  # (mount point, the hierarchy's directory mounted there)
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        if tail[0] == "cgroup" and "cpu" in tail[2].split(",") and v1_mount is None:
            v1_mount = (Path(fields[4]), fields[3])
        elif tail[0] == "cgroup2" and v2_mount is None:
            v2_mount = (Path(fields[4]), fields[3])
    paths: dict[str, str] = {}
    for line in own.splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path
    if v1_mount is not None and "cpu" in paths:
        return CgroupCpu(1, _own_dir(*v1_mount, paths["cpu"]))
    if v2_mount is not None and "" in paths:
        parent = _own_dir(*v2_mount, paths[""])
        if "cpu" not in _read(parent / "cgroup.controllers").split():
            raise ConfigError(f"--worker-cpu: the cgroup v2 group {parent} has no cpu controller")
        return CgroupCpu(2, parent)
    raise ConfigError("--worker-cpu: no cgroup cpu controller is mounted (Linux cgroups needed)")


def _own_dir(mount: Path, root: str, path: str) -> Path:
    """This process's cgroup directory: its ``path`` in the hierarchy, under the ``mount`` of the
    hierarchy's directory ``root`` (``/`` unless a subtree is mounted)."""
    if root != "/" and (path == root or path.startswith(root + "/")):
        path = path[len(root) :]
    return mount.joinpath(path.lstrip("/"))


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii")
    except OSError as exc:
        raise ConfigError(f"--worker-cpu: cannot read {path}: {exc.strerror or exc}") from None


def _write(path: Path, value: str) -> None:
    try:
        path.write_text(value, encoding="ascii")
    except OSError as exc:
        raise ConfigError(
            f"--worker-cpu: cannot write {path}: {exc.strerror or exc}"
            " (capping CPU needs root and a writable cgroup cpu controller)"
        ) from None


class CpuCaps:
    """One cgroup per name, each capped at ``cores`` (see the module doc); a context manager."""

    def __init__(self, cgroup: CgroupCpu, cores: float, names: list[str]) -> None:
        if not cores >= MIN_CORES:
            raise ConfigError(f"--worker-cpu: a cap is at least {MIN_CORES:g} core")
        self.cores = cores
        self._cgroup = cgroup
        tag = f"ordersaga-bench-{os.getpid()}-{secrets.token_hex(3)}"
        self._groups = {name: cgroup.parent / f"{tag}-{name}" for name in names}
        self._made: list[Path] = []
        self._pids: dict[int, str] = {}
        #: Per name at close: of the bandwidth periods in which the group ran, the share in
        #: which it was throttled (used up its quota).
        self.throttled: dict[str, float] = {}

    def __enter__(self) -> CpuCaps:
        try:
            self._open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _open(self) -> None:
        quota = round(self.cores * PERIOD_US)
        if self._cgroup.version == 2:
            control = self._cgroup.parent / "cgroup.subtree_control"
            if "cpu" not in _read(control).split():
                try:
                    control.write_text("+cpu", encoding="ascii")
                except OSError as exc:
                    raise ConfigError(
                        f"--worker-cpu: cannot enable the cpu controller in {control}:"
                        f" {exc.strerror or exc} (cgroup v2 allows it only in a group without"
                        " processes of its own, or the root, and only to root)"
                    ) from None
        for group in self._groups.values():
            try:
                group.mkdir()
            except OSError as exc:
                raise ConfigError(
                    f"--worker-cpu: cannot make the cgroup {group}: {exc.strerror or exc}"
                    " (capping CPU needs root and a writable cgroup cpu controller)"
                ) from None
            self._made.append(group)
            if self._cgroup.version == 1:
                _write(group / "cpu.cfs_period_us", str(PERIOD_US))
                _write(group / "cpu.cfs_quota_us", str(quota))
            else:
                _write(group / "cpu.max", f"{quota} {PERIOD_US}")

    def attach(self, pids: dict[int, str]) -> None:
        """Move each pid whose name has a group into it (a pid already moved is skipped, so a
        restarted process's new pid is caught by calling this again)."""
        for pid, name in pids.items():
            group = self._groups.get(name)
            if group is None or self._pids.get(pid) == name:
                continue
            try:
                (group / "cgroup.procs").write_text(str(pid), encoding="ascii")
            except ProcessLookupError:  # gone already: nothing to cap
                pass
            except OSError as exc:
                raise ConfigError(
                    f"--worker-cpu: cannot move process {pid} into {group}: {exc.strerror or exc}"
                ) from None
            self._pids[pid] = name

    def close(self) -> None:
        """Read the throttling, move what is left to the parent cgroup, remove the groups."""
        for name, group in self._groups.items():
            if group in self._made:
                self.throttled[name] = _throttled_share(group)
        for group in reversed(self._made):
            with contextlib.suppress(OSError):
                for pid in (group / "cgroup.procs").read_text(encoding="ascii").split():
                    with contextlib.suppress(OSError):  # exited meanwhile
                        (self._cgroup.parent / "cgroup.procs").write_text(pid, encoding="ascii")
            with contextlib.suppress(OSError):
                group.rmdir()
        self._made = []


def _throttled_share(group: Path) -> float:
    """``nr_throttled / nr_periods`` of the group's ``cpu.stat`` (0.0 when unreadable)."""
    try:
        lines = (group / "cpu.stat").read_text(encoding="ascii").splitlines()
    except OSError:
        return 0.0
    stat = dict(line.split(" ", 1) for line in lines if " " in line)
    try:
        periods, throttled = int(stat["nr_periods"]), int(stat["nr_throttled"])
    except (KeyError, ValueError):
        return 0.0
    return throttled / periods if periods else 0.0
