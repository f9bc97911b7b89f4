"""End-to-end fixtures: run the real `ordersaga` command in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()


def ordersaga(
    *args: str | Path,
    input: bytes | str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 240,
) -> Result:
    data = input.encode() if isinstance(input, str) else input
    proc = subprocess.run(
        [sys.executable, "-m", "ordersaga", *map(str, args)],
        input=data,
        capture_output=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    return Result(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
