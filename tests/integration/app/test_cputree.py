"""The CPU of a whole setup (:mod:`ordersaga.proving.cputree`) and the machine header
(:mod:`ordersaga.proving.machine`): real processes, a real PostgreSQL backend, a real fsync."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import asyncpg

from ordersaga.proving.cputree import CpuTree, database_of, process_cpu
from ordersaga.proving.machine import Machine, fsync_p99

_BURN = """
import sys, time
end = time.process_time() + float(sys.argv[1])
while time.process_time() < end:
    pass
print("done", flush=True)
sys.stdin.read()
"""


def test_process_cpu_reads_this_process_and_misses_a_gone_one() -> None:
    seen = process_cpu(os.getpid())
    assert seen is not None and seen[0] > 0 and seen[1] >= 0
    assert process_cpu(2**22 + 12345) is None  # above the kernel's pid limit
    assert database_of("postgresql://u@h:5432/ordersaga_x?sslmode=disable") == "ordersaga_x"


async def test_a_child_process_cpu_counts_in_the_tree() -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _BURN, "0.4",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with CpuTree(lambda: {child.pid: "burner"}, interval=0.05) as tree:
            own = time.process_time()
            assert child.stdout is not None
            assert await child.stdout.readline() == b"done\n"  # it burnt 0.4 s of CPU
            own = time.process_time() - own
        assert tree.pg_backends is None
        # The child's 0.4 s (less what it burnt before the first sample: its start-up only).
        assert tree.seconds - own >= 0.3
        # Split by process: this one and the child, by its name; together the whole.
        assert set(tree.by_process) == {"bench", "burner"}
        assert tree.by_process["burner"] >= 0.3
        assert abs(sum(tree.by_process.values()) - tree.seconds) < 1e-6
    finally:
        assert child.stdin is not None
        child.stdin.close()
        await child.wait()


async def test_this_process_alone_is_its_own_cpu() -> None:
    async with CpuTree() as tree:
        started = time.process_time()
        end = started + 0.05
        while time.process_time() < end:
            pass
        spent = time.process_time() - started
    assert spent <= tree.seconds < spent + 0.05


async def test_backends_serving_the_databases_count(pg_url: str) -> None:
    server = pg_url.rsplit("/", 1)[0] + "/postgres"
    conn = await asyncpg.connect(pg_url)
    try:
        async with CpuTree(pg_url=server, databases=[database_of(pg_url)], interval=0.05) as tree:
            own = time.process_time()
            await conn.fetchval("SELECT count(*) FROM generate_series(1, 3000000)")
            own = time.process_time() - own
    finally:
        await conn.close()
    assert tree.pg_backends == 1
    assert tree.seconds - own > 0.05  # the backend counted the series, not this process
    assert tree.by_process[f"pg {database_of(pg_url)}"] > 0.05


async def test_no_database_named_means_no_backend_counted() -> None:
    async with CpuTree(pg_url="postgresql://nowhere.invalid/x") as tree:
        pass
    assert tree.pg_backends is None and tree.seconds >= 0


def test_the_machine_header_names_cpu_cores_and_fsync(tmp_path: Path) -> None:
    machine = Machine.probe(tmp_path, samples=5)
    assert machine.cores >= 1 and machine.cpu
    assert machine.fsync_p99_s is not None and machine.fsync_p99_s > 0
    assert f"{machine.cores} cores" in machine.header() and "fsync p99" in machine.header()
    assert machine.to_json()["fsync_p99_ms"] > 0
    assert list(tmp_path.iterdir()) == []  # the probe's scratch file is gone
    assert fsync_p99(tmp_path / "missing") is None
    assert fsync_p99(tmp_path, samples=0) is None
