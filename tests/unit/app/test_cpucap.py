"""The cgroup CPU caps of `bench --worker-cpu`, on fake cgroup trees in a temporary directory
(the kernel's files are plain files here; the real controller is exercised by the e2e test)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ordersaga.errors import ConfigError
from ordersaga.proving.cpucap import MIN_CORES, PERIOD_US, CgroupCpu, CpuCaps, find_cpu_cgroup

_V1_MOUNTS = (
    "30 25 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n"
    "31 30 0:27 / {cpu} rw,relatime - cgroup cgroup rw,cpu\n"
    "32 30 0:28 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "33 30 0:29 / {v2} rw,relatime - cgroup2 cgroup2 rw\n"
)


def _proc(tmp_path: Path, mountinfo: str, cgroup: str) -> Path:
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "mountinfo").write_text(mountinfo)
    (proc / "cgroup").write_text(cgroup)
    return proc


def test_v1_is_found_at_this_process_s_own_cpu_group(tmp_path: Path) -> None:
    cpu, v2 = tmp_path / "cpu", tmp_path / "unified"
    proc = _proc(
        tmp_path,
        _V1_MOUNTS.format(cpu=cpu, v2=v2),
        "4:memory:/box/1\n1:cpu:/jobs/7\n0::/\n",
    )
    assert find_cpu_cgroup(proc) == CgroupCpu(1, cpu / "jobs" / "7")


def test_a_mounted_subtree_is_not_counted_twice(tmp_path: Path) -> None:
    cpu = tmp_path / "cpu"
    mounts = f"31 30 0:27 /jobs {cpu} rw - cgroup cgroup rw,cpuacct,cpu\n"
    proc = _proc(tmp_path, mounts, "2:cpu,cpuacct:/jobs/7\n")
    assert find_cpu_cgroup(proc) == CgroupCpu(1, cpu / "7")


def test_v2_needs_the_cpu_controller(tmp_path: Path) -> None:
    root = tmp_path / "cg2"
    (root / "app").mkdir(parents=True)
    mounts = f"33 30 0:29 / {root} rw,relatime - cgroup2 cgroup2 rw\n"
    proc = _proc(tmp_path, mounts, "0::/app\n")
    (root / "app" / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    assert find_cpu_cgroup(proc) == CgroupCpu(2, root / "app")
    (root / "app" / "cgroup.controllers").write_text("memory pids\n")
    with pytest.raises(ConfigError, match="no cpu controller"):
        find_cpu_cgroup(proc)


def test_no_cpu_controller_at_all_is_a_config_error(tmp_path: Path) -> None:
    proc = _proc(tmp_path, "30 25 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n", "1:cpu:/\n")
    with pytest.raises(ConfigError, match="no cgroup cpu controller is mounted"):
        find_cpu_cgroup(proc)
    with pytest.raises(ConfigError, match="cannot read the cgroups"):
        find_cpu_cgroup(tmp_path / "missing")


def _fake_v1(tmp_path: Path) -> Path:
    parent = tmp_path / "cpu"
    parent.mkdir()
    (parent / "cgroup.procs").write_text("")
    return parent


def test_v1_groups_are_capped_filled_and_emptied(tmp_path: Path) -> None:
    parent = _fake_v1(tmp_path)
    with CpuCaps(CgroupCpu(1, parent), 0.25, ["w1", "w2"]) as caps:
        groups = {g.name.rsplit("-", 1)[-1]: g for g in parent.iterdir() if g.is_dir()}
        assert set(groups) == {"w1", "w2"}
        for group in groups.values():
            assert (group / "cpu.cfs_period_us").read_text() == str(PERIOD_US)
            assert (group / "cpu.cfs_quota_us").read_text() == str(PERIOD_US // 4)
        caps.attach({101: "w1", 102: "w2", 103: "inventory"})  # a service: never capped
        assert (groups["w1"] / "cgroup.procs").read_text() == "101"
        assert (groups["w2"] / "cgroup.procs").read_text() == "102"
        caps.attach({101: "w1", 104: "w1"})  # a restarted worker: only the new pid moves
        assert (groups["w1"] / "cgroup.procs").read_text() == "104"
        (groups["w1"] / "cpu.stat").write_text("nr_periods 200\nnr_throttled 150\n")
        (groups["w2"] / "cgroup.procs").write_text("")  # w2 exited
    assert caps.throttled == {"w1": 0.75, "w2": 0.0}  # w2: no cpu.stat to read
    # What was left in a group went back to this process's group (the real kernel then lets
    # the empty groups be removed: the e2e test checks that; a fake directory is not empty).
    assert (parent / "cgroup.procs").read_text() == "104"


def test_v2_enables_the_controller_and_writes_cpu_max(tmp_path: Path) -> None:
    parent = tmp_path / "app"
    parent.mkdir()
    (parent / "cgroup.subtree_control").write_text("memory\n")
    with CpuCaps(CgroupCpu(2, parent), 0.5, ["w1"]):
        assert (parent / "cgroup.subtree_control").read_text() == "+cpu"
        (group,) = [g for g in parent.iterdir() if g.is_dir()]
        assert (group / "cpu.max").read_text() == f"{PERIOD_US // 2} {PERIOD_US}"


def test_unwritable_groups_are_a_config_error_and_leave_nothing(tmp_path: Path) -> None:
    parent = _fake_v1(tmp_path)
    (parent / "blocker").write_text("")
    caps = CpuCaps(CgroupCpu(1, parent / "blocker"), 0.25, ["w1"])
    with pytest.raises(ConfigError, match=r"cannot make the cgroup .*needs root"):
        caps.__enter__()
    with pytest.raises(ConfigError, match="at least"):
        CpuCaps(CgroupCpu(1, parent), MIN_CORES / 2, ["w1"])
    assert sorted(p.name for p in parent.iterdir()) == ["blocker", "cgroup.procs"]


def test_a_process_that_cannot_be_moved_is_an_error_unless_it_is_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parent = _fake_v1(tmp_path)
    with CpuCaps(CgroupCpu(1, parent), 0.25, ["w1"]) as caps:
        (group,) = [g for g in parent.iterdir() if g.is_dir()]
        (group / "cgroup.procs").mkdir()  # writing it fails, and not for a missing process
        with pytest.raises(ConfigError, match="cannot move process 7"):
            caps.attach({7: "w1"})
        (group / "cgroup.procs").rmdir()

        def gone(path: Path, text: str, encoding: str) -> int:
            raise ProcessLookupError(3, "No such process")  # the kernel's ESRCH

        monkeypatch.setattr(Path, "write_text", gone)
        caps.attach({8: "w1"})  # exited before it was moved: nothing to cap
        monkeypatch.undo()
