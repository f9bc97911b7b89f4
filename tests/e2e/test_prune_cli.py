"""`ordersaga prune` end to end: a run, a prune of everything finished, a second run on the same
data dir that resubmits the first run's orders, reuses some of their ids and adds new ones.

The oracle is the same scenario without any prune: every line of every run must be the same
(``--json``, so ``replayed`` and the reasons are compared too), and the audit must pass after
each step. The services' rows outlive the log's by the message-age limit plus its margin, so the
last step prunes them with the clock a day ahead, through the same function ``prune`` runs.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ordersaga.local.retention import PruneSettings, prune_locations
from tests.e2e.conftest import Result, ordersaga

ADDR = "Address: 1 Main St, Springfield, US"


def order(n: int, items: str = "{A, 1}", user: int = 456) -> str:
    return f"Order p{n}, User {user}, Items: [{items}], Payment: PayPal, {ADDR}"


FIRST = [
    order(1),
    order(2, "{B, 2}, {A, 1}"),
    order(3, "{C, 1}"),  # out of stock: failed
    order(4, "{ANVIL, 1}"),  # too heavy: failed after a compensation
    order(5, "{GPU, 1}", user=99),  # no credit: failed after two compensations
    f"Order p6, User -1, Items: [{{A, 1}}], Payment: PayPal, {ADDR}",  # invalid
]
SECOND = [
    *FIRST,  # resubmitted: replayed
    order(1, "{A, 2}"),  # reused ids with other content: failed
    order(3, "{B, 1}"),
    order(7, "{A, 3}"),  # new
    order(8, "{C, 1}"),
]


def run(data: Path, lines: list[str], *extra: str) -> Result:
    result = ordersaga(
        "run",
        "--data-dir",
        data,
        "--json",
        "--concurrency",
        "1",
        *extra,
        input="\n".join(lines) + "\n",
    )
    assert result.code == 0, result.err
    return result


def audit_ok(data: Path, *extra: str) -> None:
    result = ordersaga("audit", "--data-dir", data, *extra)
    assert result.code == 0, result.out + result.err


def outcomes(result: Result) -> list[dict[str, object]]:
    return [json.loads(line) for line in result.lines]


def scenario(
    data: Path, prune: Callable[[], None] | None, *extra: str
) -> list[list[dict[str, object]]]:
    runs = []
    for lines in (FIRST, SECOND, SECOND):
        runs.append(outcomes(run(data, lines, *extra)))
        audit_ok(data, *extra)
        if prune is not None:
            prune()
            audit_ok(data, *extra)
    return runs


def prune_services_later(data: Path, store: str | None, dbs: dict[str, str]) -> None:
    report = asyncio.run(
        prune_locations(
            data,
            PruneSettings(older_than=0),
            store_url=store,
            service_urls=dbs,
            now=time.time() + 86400,
        )
    )
    assert sum(rows.resources for rows in report.services.values()) > 0


def check(control: list[list[dict[str, object]]], pruned: list[list[dict[str, object]]]) -> None:
    assert pruned == control
    second = {o["order_id"]: o for o in control[1]}
    assert all(o["replayed"] for o in control[1][: len(FIRST)])
    assert [o["status"] for o in control[1][len(FIRST) :]] == [
        "failed",
        "failed",
        "confirmed",
        "failed",
    ]
    assert second["p7"]["replayed"] is False


Runs = list[list[dict[str, object]]]


@pytest.fixture(scope="module")
def control(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    """The scenario without any prune: what every pruned variant must print."""
    return scenario(tmp_path_factory.mktemp("control") / "data", None)


def test_prune_keeps_replays_and_id_reuse_on_sqlite(tmp_path: Path, control: Runs) -> None:
    data = tmp_path / "data"
    steps = iter(["log", "services", "log"])

    def prune() -> None:
        if next(steps) == "services":
            prune_services_later(data, None, {})
            return
        result = ordersaga("prune", "--data-dir", data, "--older-than", "0s", "--json")
        assert result.code == 0, result.err
        report = json.loads(result.out)
        assert report["dry_run"] is False and report["bytes_after"] > 0

    check(control, scenario(data, prune))
    dry = ordersaga("prune", "--data-dir", data, "--older-than", "0s", "--dry-run", "--json")
    assert json.loads(dry.out)["sagas"] == 0  # everything finished is compacted already


def test_prune_refuses_what_is_not_a_data_dir(tmp_path: Path) -> None:
    missing = ordersaga("prune", "--data-dir", tmp_path / "nothing")
    assert missing.code == 2 and "not an ordersaga data dir" in missing.err
    assert not (tmp_path / "nothing" / "saga.db").exists()
    bad = ordersaga("prune", "--data-dir", tmp_path, "--older-than", "soon")
    assert bad.code == 2 and "not a duration" in bad.err and "Traceback" not in bad.err


@pytest.mark.pg
def test_prune_keeps_replays_and_id_reuse_on_postgresql(
    tmp_path: Path, pg_database_factory: Callable[[], object], control: Runs
) -> None:
    urls = [asyncio.run(pg_database_factory()) for _ in range(4)]  # type: ignore[arg-type]
    store, dbs = (
        str(urls[0]),
        dict(zip(("inventory", "shipping", "payment"), map(str, urls[1:]), strict=True)),
    )
    extra = ("--store", store, "--service-dbs", ",".join(f"{k}={v}" for k, v in dbs.items()))
    data = tmp_path / "data"
    steps = iter(["log", "services", "log"])

    def prune() -> None:
        if next(steps) == "services":
            prune_services_later(data, store, dbs)
            return
        result = ordersaga("prune", "--older-than", "0s", "--json", *extra)
        assert result.code == 0, result.err
        assert json.loads(result.out)["bytes_after"] is None

    check(control, scenario(data, prune, *extra))
