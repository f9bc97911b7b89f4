"""`sagas list`, `sagas show` and `audit` on a SQLite data dir only read (issue 9).

While a run executes the data dir they read beside it; after it ended they leave no
``-wal``/``-shm`` file behind and change no byte of any file. Real processes, real files.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

from tests.e2e.conftest import ordersaga

INSPECTIONS = (
    ("sagas", "list", "--limit", "5"),
    ("sagas", "list", "--status", "failed", "--json"),
    ("sagas", "show", "o1"),
    ("sagas", "show", "o2", "--json"),
    ("audit",),
)


def _contents(root: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.iterdir())}


def _inspect(data: Path) -> None:
    for args in INSPECTIONS:
        result = ordersaga(*args, "--data-dir", data)
        assert result.code in (0, 1), (args, result.err)  # 1: audit during the run, see below
        assert result.out and "Traceback" not in result.err, (args, result.err)


def test_inspection_reads_beside_a_run_and_leaves_nothing_behind(tmp_path: Path) -> None:
    data = tmp_path / "data"
    orders = ordersaga("generate", "--orders", "60", "--seed", "5").out.encode()
    run = subprocess.Popen(
        [sys.executable, "-m", "ordersaga", "run", "-", "--data-dir", str(data)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert run.stdin is not None and run.stdout is not None and run.stderr is not None
    try:
        run.stdin.write(orders)
        run.stdin.flush()
        for _ in range(3):  # a few orders are decided; the run holds the lock (stdin is open)
            assert run.stdout.readline().startswith(b"Order ")
        _inspect(data)  # beside the executor
    finally:
        run.stdin.close()
        run.stdout.read()
        err = run.stderr.read().decode()
        run.wait(timeout=60)
    assert run.returncode in (0, 65), err
    before = _contents(data)
    assert not any(name.endswith(("-wal", "-shm")) for name in before), before
    _inspect(data)
    assert ordersaga("audit", "--data-dir", data).code == 0
    assert _contents(data) == before  # no file added, none changed
