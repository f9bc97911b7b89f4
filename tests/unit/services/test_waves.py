"""The wave driver's rules (:mod:`ordersaga.participant.waves`), on a recording transaction.

Which reads go together, in what order the outcomes are settled, and what happens to a decision
that awaits something else or fails. (That the services' batches decide as one command after the
other on a real PostgreSQL is tested in ``tests/integration/services/test_read_waves.py``.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from typing import Any

import pytest

from ordersaga.db import Row, Tx
from ordersaga.participant.plan import Footprint
from ordersaga.participant.waves import WAVE_READER, WINDOW, decide_in_waves


class _Recording(Tx):
    """Answers each read with one row naming it; records the waves (and the settled)."""

    def __init__(self) -> None:
        self.waves: list[list[str]] = []
        self.log: list[str] = []

    async def execute(self, sql: str, *params: Any) -> int:
        raise AssertionError("not used")

    async def fetchone(self, sql: str, *params: Any) -> Row | None:
        raise AssertionError("reads go through fetch_each")

    async def fetchall(self, sql: str, *params: Any) -> list[Row]:
        raise AssertionError("reads go through fetch_each")

    async def fetch_each(self, reads: Sequence[tuple[str, tuple[Any, ...]]]) -> list[list[Row]]:
        self.waves.append([sql for sql, _ in reads])
        self.log.extend(f"read {sql}" for sql, _ in reads)
        return [[{"read": sql}] for sql, _ in reads]


def _rows(*keys: str) -> frozenset[tuple[str, str]]:
    return frozenset(("t", key) for key in keys)


def _fp(reads: str, writes: str = "", anywhere: str = "") -> Footprint:
    return Footprint(_rows(*reads), _rows(*writes), frozenset(anywhere.split()))


async def _reading(name: str, *reads: str) -> str:
    for sql in reads:
        row = await WAVE_READER.fetchone(sql)
        assert row == {"read": sql}
    return name


async def _run(
    tx: _Recording, decisions: list[tuple[Coroutine[Any, Any, str], Footprint | None]]
) -> list[str]:
    settled: list[str] = []

    async def settle(name: str) -> None:
        settled.append(name)
        tx.log.append(f"settle {name}")

    await decide_in_waves(tx, decisions, settle)
    return settled


async def test_reads_of_rows_no_earlier_command_may_write_go_together() -> None:
    tx = _Recording()
    settled = await _run(
        tx,
        [
            (_reading("a", "ra"), _fp("x", "x")),
            (_reading("b", "rb"), _fp("y", "y")),  # other rows: with a
            (_reading("c", "rc"), _fp("x", "x")),  # a may write x: after a
            (_reading("d", "rd"), _fp("z", "z")),  # c, not settled, writes only x: with a
        ],
    )
    assert tx.waves == [["ra", "rb", "rd"], ["rc"]]
    assert settled == ["a", "b", "c", "d"]
    # Writes in batch order: d is settled only after c, whose read follows a's settling.
    assert tx.log.index("settle a") < tx.log.index("read rc") < tx.log.index("settle d")


async def test_a_table_written_anywhere_holds_back_every_read_of_it() -> None:
    tx = _Recording()
    await _run(
        tx,
        [
            (_reading("a", "ra"), _fp("own-a", "own-a", anywhere="t")),
            (_reading("b", "rb"), Footprint(frozenset({("u", "k")}), frozenset())),
            (_reading("c", "rc"), _fp("own-c", "own-c")),
        ],
    )
    assert tx.waves == [["ra", "rb"], ["rc"]]


async def test_a_command_without_a_footprint_reads_alone_and_holds_back_the_rest() -> None:
    tx = _Recording()
    await _run(
        tx,
        [
            (_reading("a", "ra"), _fp("x", "x")),
            (_reading("b", "rb"), None),  # may read anything: after a
            (_reading("c", "rc"), _fp("y", "y")),  # b may write anything: after b
        ],
    )
    assert tx.waves == [["ra"], ["rb"], ["rc"]]


async def test_a_wave_looks_at_a_window_of_commands() -> None:
    tx = _Recording()
    count = WINDOW + 6
    own = [frozenset({("t", str(i))}) for i in range(count)]
    decisions = [(_reading(str(i), f"r{i}"), Footprint(own[i], own[i])) for i in range(count)]
    assert await _run(tx, decisions) == [str(i) for i in range(count)]
    assert [len(wave) for wave in tx.waves] == [WINDOW, 6]


async def test_a_decision_reading_twice_reads_again_in_a_later_wave() -> None:
    tx = _Recording()
    settled = await _run(
        tx,
        [
            (_reading("a", "ra1", "ra2"), _fp("x", "x")),
            (_reading("b"), _fp("x", "x")),  # reads nothing: decided at once, settled after a
            (_reading("c", "rc"), _fp("y", "y")),
        ],
    )
    assert tx.waves == [["ra1", "rc"], ["ra2"]]
    assert settled == ["a", "b", "c"]


async def test_a_decision_awaiting_something_else_is_still_served() -> None:
    async def sleepy() -> str:
        await asyncio.sleep(0)
        await asyncio.wrap_future(asyncio.get_running_loop().run_in_executor(None, int))
        return await _reading("s", "rs")

    tx = _Recording()
    assert await _run(tx, [(sleepy(), _fp("x", "x")), (_reading("b", "rb"), None)]) == ["s", "b"]
    assert tx.waves == [["rs"], ["rb"]]


async def test_a_failing_decision_closes_the_others() -> None:
    closed: list[str] = []

    async def waiting(name: str) -> str:
        try:
            return await _reading(name, f"r{name}", f"r{name}-again")
        except GeneratorExit:
            closed.append(name)
            raise

    async def failing() -> str:
        await WAVE_READER.fetchall("boom")
        raise ValueError("bad decision")

    tx = _Recording()
    with pytest.raises(ValueError, match="bad decision"):
        await _run(tx, [(waiting("a"), _fp("x", "x")), (failing(), _fp("y", "y"))])
    assert closed == ["a"]
