"""No full card number at rest, on stdout or stderr: valid, declined and malformed cards, in both
line forms, through the real command (SQLite data dir and PostgreSQL) and the real runtime
(files searched while the databases are open, WAL files included, and after they are closed)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest

from ordersaga.local.pipeline import Pipeline
from ordersaga.local.run import lines_from
from ordersaga.local.runtime import RuntimeSettings, open_runtime
from tests.e2e.conftest import Result

VALID, VALID_2 = "4111111111111111", "5105105105105100"  # confirmed
DECLINED, DECLINED_2 = "4111111111111112", "4012888888881882"  # fail the Luhn check
MALFORMED = ["4012-8888-8888-1881", "5555 5555 5555 4444", "4111x1111x1111x1111"]
CARDS = [VALID, VALID_2, DECLINED, DECLINED_2, *MALFORMED]
#: What must be found nowhere: every card's digits, and each malformed form as written.
FORBIDDEN = [re.sub(r"[^0-9]", "", card).encode() for card in CARDS] + [
    card.encode() for card in MALFORMED
]
PARTS = "User 456, Items: [{A, 1}]"
ADDRESS = "1 Main St, Paris, FR"


def _json_line(order_id: str, card: str) -> str:
    return json.dumps(
        {
            "order_id": order_id,
            "user_id": 456,
            "items": [{"item_id": "A", "quantity": 1}],
            "payment_info": {"method": "CreditCard", "card_number": card, "expiry": "12/30"},
            "shipping_address": {"street": "1 Main St", "city": "Paris", "country": "FR"},
        }
    )


def orders() -> str:
    lines = [
        f"Order t{n}, {PARTS}, Payment: CreditCard {card} 12/30, Address: {ADDRESS}"
        for n, card in enumerate(CARDS)
    ]
    lines += [_json_line(f"j{n}", card) for n, card in enumerate(CARDS)]
    lines.append(f"Order t0, {PARTS}, Payment: CreditCard {VALID} 12/30, Address: {ADDRESS}")
    return "\n".join(lines) + "\n"


def assert_no_card(blob: bytes, where: str) -> None:
    for card in FORBIDDEN:
        assert card not in blob, f"{card.decode()!r} found in {where}"


def scan_files(root: Path) -> list[str]:
    """Search every file under ``root``; check its mode. The names of the files seen."""
    seen = []
    assert stat.S_IMODE(root.stat().st_mode) == 0o700, root
    for path in sorted(root.rglob("*")):
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
            assert_no_card(path.read_bytes(), str(path))
            seen.append(path.name)
    return seen


def run(*args: str | Path, stdin: str, env: dict[str, str] | None = None) -> Result:
    """`ordersaga` with a permissive umask (022): the files it makes must be 0600 anyway."""
    proc = subprocess.run(
        [sys.executable, "-m", "ordersaga", *map(str, args)],
        input=stdin.encode(),
        capture_output=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        preexec_fn=lambda: os.umask(0o022),
    )
    assert_no_card(proc.stdout, f"stdout of {args}")
    assert_no_card(proc.stderr, f"stderr of {args}")
    return Result(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def _outcomes(result: Result) -> dict[str, str]:
    return {line.split()[1]: line.split()[2] for line in result.lines}


def test_no_card_number_in_the_data_dir_or_the_output(tmp_path: Path) -> None:
    data = tmp_path / "data"
    text = run("run", "--data-dir", data, "-v", stdin=orders())
    assert text.code == 0, text.err
    outcomes = _outcomes(text)
    assert outcomes["t0"] == outcomes["j1"] == "confirmed"
    assert outcomes["t2"] == outcomes["t4"] == outcomes["j6"] == "failed"
    assert "****1111" in text.err and "Luhn" in text.err
    as_json = run("run", "--data-dir", data, "--json", "-v", stdin=orders())
    assert as_json.code == 0, as_json.err
    statuses = [line.split()[2] for line in text.lines]
    assert [json.loads(line)["status"] for line in as_json.lines] == statuses
    assert {"data.key", "saga.db", "payment.db", "ordersaga.json"} <= set(scan_files(data))
    audit = run("audit", "--data-dir", data, "--json", stdin="")
    assert audit.code == 0, audit.out + audit.err


def test_no_card_number_in_open_databases_and_their_wal(tmp_path: Path) -> None:
    data = tmp_path / "data"
    stream = tmp_path / "orders.txt"
    stream.write_text(orders())

    class Sink:
        def __init__(self) -> None:
            self.seen: list[str] = []

        def outcome(self, outcome: object) -> None:
            self.seen.append(repr(outcome))

        def unreadable(self, lineno: int, reason: str) -> None:
            self.seen.append(reason)

        def rejected(self, lineno: int, order_id: str, reason: str) -> None:
            self.seen.append(reason)

        def flush(self) -> None:
            pass

    async def scenario() -> list[str]:
        old = os.umask(0o022)
        try:
            runtime = await open_runtime(RuntimeSettings(data_dir=data))
        finally:
            os.umask(old)
        sink = Sink()
        try:
            with stream.open("rb", buffering=0) as raw:
                await Pipeline(runtime.engine, sink, runtime.vault).run(lines_from(raw))
            assert_no_card("\n".join(sink.seen).encode(), "the outcomes and reasons")
            files = scan_files(data)  # while every database is open
            assert {"saga.db-wal", "payment.db-wal", "saga.db-shm"} <= set(files), files
        finally:
            await runtime.close()
        return scan_files(data)

    assert "saga.db" in asyncio.run(scenario())


@pytest.mark.pg
def test_no_card_number_in_any_postgresql_table(
    tmp_path: Path, pg_database_factory: Callable[[], object]
) -> None:
    async def databases() -> list[str]:
        return [await pg_database_factory() for _ in range(4)]  # type: ignore[misc]

    loop = asyncio.new_event_loop()
    try:
        store, *services = loop.run_until_complete(databases())
        dbs = ",".join(
            f"{name}={url}"
            for name, url in zip(("inventory", "shipping", "payment"), services, strict=True)
        )
        args = ("run", "--store", store, "--service-dbs", dbs, "--data-dir", tmp_path / "d")
        key = {"ORDERSAGA_DATA_KEY": "00" * 32}
        result = run(*args, "--json", "-v", stdin=orders(), env=key)
        assert result.code == 0, result.err
        assert json.loads(result.lines[0])["status"] == "confirmed"
        assert not (tmp_path / "d").exists()  # every part is in PostgreSQL, the key given

        async def dump(url: str) -> bytes:
            conn = await asyncpg.connect(url)
            try:
                tables = await conn.fetch(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                )
                rows = []
                for table in tables:
                    name = table["tablename"]
                    rows += await conn.fetch(f'SELECT row_to_json(t)::text AS r FROM "{name}" t')
                assert tables, url
                return "\n".join(row["r"] for row in rows).encode()
            finally:
                await conn.close()

        for url in (store, *services):
            assert_no_card(loop.run_until_complete(dump(url)), url)
    finally:
        loop.close()
