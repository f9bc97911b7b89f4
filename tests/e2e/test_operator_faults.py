"""The faults operators cause, on a SQLite data dir: a second executor, a damaged data dir,
a closed stdout. Real processes, real files (issue 9; CONTRACT.md section 7)."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import ordersaga

ORDERSAGA = [sys.executable, "-m", "ordersaga"]


def _files(root: Path) -> set[str]:
    return {p.name for p in root.iterdir()}


def _start(*args: str | Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*ORDERSAGA, *map(str, args)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_a_second_executor_is_refused_and_the_audit_stays_clean(tmp_path: Path) -> None:
    orders = ordersaga("generate", "--orders", "150", "--seed", "11").out.encode()
    for trial in range(5):
        data = tmp_path / f"data{trial}"
        args = ("run", "-", "--data-dir", data, "--fault-rate", "0.3", "--max-attempts", "2")
        first = _start(*args, "--seed", str(trial))
        assert first.stdin is not None and first.stdout is not None
        try:
            # The orders go in, the pipe stays open: the first run is executing until it closes.
            first.stdin.write(orders)
            first.stdin.flush()
            assert first.stdout.readline().startswith(b"Order ")
            second = ordersaga(*args, "--seed", str(trial + 100), input=orders)
            assert second.code == 2, second.err
            assert str(data) in second.err and f"pid {first.pid}" in second.err
            assert second.out == ""
            during = ordersaga("audit", "--data-dir", data)  # read-only, beside the run
            assert during.code in (0, 1) and "audit:" in during.out, during.err
        finally:
            first.stdin.close()
            first.stdout.read()
            err = first.stderr.read() if first.stderr else b""
            first.wait(timeout=120)
        assert first.returncode in (0, 65), err.decode()
        after = ordersaga("audit", "--data-dir", data)
        assert after.code == 0, after.out + after.err


def test_audit_creates_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert (
        ordersaga("run", "--data-dir", data, input="Order a1, User 1, Items: BOOK x1\n").code == 0
    )
    before = _files(data)
    # A killed run leaves WAL files behind: even then the audit reads them and adds nothing.
    assert ordersaga("audit", "--data-dir", data).code == 0
    assert _files(data) == before
    (data / "ordersaga.lock").unlink()
    assert ordersaga("audit", "--data-dir", data).code == 0
    assert _files(data) == before - {"ordersaga.lock"}


@pytest.fixture
def initialised(tmp_path: Path) -> Path:
    data = tmp_path / "template"
    run = ordersaga("run", "--data-dir", data, input="Order a1, User 1, Items: BOOK x1\n")
    assert run.code == 0, run.err
    return data


def _copy(template: Path, name: str) -> Path:
    target = template.parent / name
    shutil.copytree(template, target)
    return target


def _refused(data: Path, file: str, status: int = 2) -> None:
    before = {p.name: p.stat().st_size for p in data.iterdir()}
    for args in (("run",), ("audit",)):
        result = ordersaga(*args, "--data-dir", data, input="Order b1, User 2, Items: BOOK x1\n")
        assert result.code == status, (args, result.err)
        assert str(data / file) in result.err, result.err
        assert "Traceback" not in result.err and result.out in ("",)
        assert {p.name: p.stat().st_size for p in data.iterdir()} == before  # nothing created


def test_deleted_emptied_swapped_truncated_and_foreign_databases_are_refused(
    initialised: Path, tmp_path: Path
) -> None:
    deleted = _copy(initialised, "deleted")
    (deleted / "inventory.db").unlink()
    _refused(deleted, "inventory.db")

    saga_log_deleted = _copy(initialised, "nolog")
    (saga_log_deleted / "saga.db").unlink()
    _refused(saga_log_deleted, "saga.db")

    emptied = _copy(initialised, "emptied")
    (emptied / "payment.db").write_bytes(b"")
    _refused(emptied, "payment.db")

    swapped = _copy(initialised, "swapped")
    inventory, payment = swapped / "inventory.db", swapped / "payment.db"
    inventory.rename(swapped / "tmp.db")
    payment.rename(inventory)
    (swapped / "tmp.db").rename(payment)
    _refused(swapped, "inventory.db")

    other = tmp_path / "other"
    assert (
        ordersaga("run", "--data-dir", other, input="Order c1, User 3, Items: BOOK x1\n").code == 0
    )
    foreign = _copy(initialised, "foreign")
    shutil.copy(other / "shipping.db", foreign / "shipping.db")
    _refused(foreign, "shipping.db")

    truncated = _copy(initialised, "truncated")
    content = (truncated / "saga.db").read_bytes()
    (truncated / "saga.db").write_bytes(content[: len(content) // 2])
    _refused(truncated, "saga.db")

    corrupt = _copy(initialised, "corrupt")
    (corrupt / "saga.db").write_bytes(b"this is not a database" * 10)
    _refused(corrupt, "saga.db", status=74)


def test_another_world_is_refused(initialised: Path, tmp_path: Path) -> None:
    world = json.loads((initialised / "ordersaga.json").read_text())["world"]
    world["items"]["BOOK"]["stock"] += 1
    other = tmp_path / "world.json"
    other.write_text(json.dumps(world))
    result = ordersaga("run", "--data-dir", initialised, "--world", other, input="")
    assert result.code == 2 and "--world" in result.err and str(initialised) in result.err


def test_a_closed_stdout_ends_quietly(tmp_path: Path) -> None:
    orders = ordersaga("generate", "--orders", "3000", "--seed", "5").out
    pipeline = subprocess.run(
        f"{sys.executable} -m ordersaga run --data-dir {tmp_path / 'd'} | head -1",
        shell=True,
        input=orders.encode(),
        capture_output=True,
        timeout=120,
        env={**os.environ},
    )
    assert pipeline.stdout.decode().count("\n") == 1
    assert b"Traceback" not in pipeline.stderr and b"BrokenPipe" not in pipeline.stderr
    audit = ordersaga("audit", "--data-dir", tmp_path / "d")
    assert audit.code in (0, 1)  # the run stopped early: unfinished sagas are fine here


def test_a_full_disk_is_one_line_and_status_74(tmp_path: Path) -> None:
    """A file size limit makes every write past it fail (EFBIG) as a full disk would."""
    data = tmp_path / "data"
    orders = ordersaga("generate", "--orders", "3000", "--seed", "5").out

    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (400_000, 400_000))

    proc = subprocess.run(
        [*ORDERSAGA, "run", "--data-dir", str(data)],
        input=orders.encode(),
        capture_output=True,
        timeout=120,
        preexec_fn=limit_file_size,
    )
    err = proc.stderr.decode()
    assert proc.returncode == 74, err[-2000:]
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("ordersaga: I/O error")
