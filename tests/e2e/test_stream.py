"""The stream is read incrementally: outcomes appear before the input ends (an endless pipe)."""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
from pathlib import Path


def _read_line(proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    assert proc.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    try:
        if not selector.select(timeout):
            raise AssertionError(f"no outcome line within {timeout} s")
        return proc.stdout.readline()
    finally:
        selector.close()


def test_outcomes_appear_while_the_pipe_stays_open(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ordersaga", "run", "--data-dir", str(tmp_path / "d")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ},
    )
    assert proc.stdin is not None
    try:
        for i in range(3):
            line = (
                f"Order p{i}, User {i}, Items: [{{A, 1}}], Payment: PayPal,"
                " Address: 1 Main St, Springfield, US\n"
            )
            proc.stdin.write(line.encode())
            proc.stdin.flush()
            # The pipe is still open: the outcome must come anyway.
            assert _read_line(proc, timeout=60) == f"Order p{i} confirmed\n".encode()
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
