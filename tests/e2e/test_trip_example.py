"""``examples/trip_saga.py``, the README's "Your own saga", runs as it is documented.

It is run as a user runs it (a fresh Python process, the script's path): one trip confirmed,
one compensated, and run again on the same data dir both are replayed from the SQLite log.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "trip_saga.py"
CONFIRMED = "trip T1 confirmed: flight confirmed, hotel confirmed, car confirmed, charge confirmed"
FAILED = (
    "trip T2 failed (car hold: Mini is sold out): flight released, hotel released, car -, charge -"
)


def run(*args: str | Path) -> list[str]:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), *map(str, args)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    return proc.stdout.splitlines()


def test_the_trip_example_confirms_one_trip_and_compensates_the_other() -> None:
    assert run() == [CONFIRMED, FAILED]


def test_the_trip_example_replays_its_decided_trips_from_the_log(tmp_path: Path) -> None:
    data = tmp_path / "trips"
    assert run("--data-dir", data) == [CONFIRMED, FAILED]
    assert {p.name for p in data.iterdir()} >= {"log.db", "flight.db", "charge.db"}
    assert run("--data-dir", data) == [f"{CONFIRMED} [replayed]", f"{FAILED} [replayed]"]
