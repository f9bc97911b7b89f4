"""`ordersaga sagas ...`, `ordersaga workers` and `GET /orders` on a PostgreSQL saga log while
the topology's workers execute."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.integration.http.conftest import get_json, ordersaga_env

from .conftest import API_KEYS, Topology, order
from .conftest import ordersaga as run_cli


class _Result:
    def __init__(self, result: tuple[int, str, str]) -> None:
        self.code, self.out, self.err = result


def ordersaga(*args: str) -> _Result:
    return _Result(run_cli(*args))


pytestmark = pytest.mark.pg


def _jsons(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def test_list_show_and_repairs_on_a_shared_log_while_workers_execute(
    topology: Topology,
) -> None:
    ids = [f"ops-{i}" for i in range(40)]
    # K orders by users 8200xx; every fourth asks for C (out of stock): failed at reserve.
    lines = [order(i, 820_000 + n, "C" if n % 4 == 0 else "K") for n, i in enumerate(ids)]
    submit = subprocess.Popen(
        [sys.executable, "-m", "ordersaga", "run", "--submit-only", "--store", topology.store,
         "--json"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=ordersaga_env(),
    )  # fmt: skip
    assert submit.stdin is not None
    submit.stdin.write(("\n".join(lines) + "\n").encode())
    submit.stdin.flush()
    # Read-only commands while the workers execute (and the submitter waits).
    during = ordersaga("sagas", "list", "--store", topology.store, "--json")
    assert during.code == 0, during.err
    out, err = submit.communicate(b"", timeout=120)  # closes its input
    assert submit.returncode == 0, err
    assert b"no live worker" not in err
    outcomes = {o["order_id"]: o for o in _jsons(out.decode())}
    assert set(outcomes) == set(ids)

    listed = ordersaga("sagas", "list", "--store", topology.store, "--json")
    assert listed.code == 0, listed.err
    rows = [r for r in _jsons(listed.out) if r["order_id"] in outcomes]
    assert sorted(r["order_id"] for r in rows) == sorted(ids)  # one line per saga
    assert all(r["status"] == outcomes[r["order_id"]]["status"] for r in rows)
    failed = ordersaga("sagas", "list", "--store", topology.store, "--status", "failed", "--json")
    failed_ids = {r["order_id"] for r in _jsons(failed.out)}
    assert {i for i, o in outcomes.items() if o["status"] == "failed"} <= failed_ids
    assert all(r["status"] == "failed" for r in _jsons(failed.out))

    view = json.loads(ordersaga("sagas", "show", "ops-1", "--store", topology.store,
                                "--json").out)  # fmt: skip
    assert view["status"] == "confirmed" and view["worker"] is not None  # who ran it
    assert [s["phase"] for s in view["steps"]].count("confirm") == 3
    for step in view["steps"]:  # every attempt, as the workers logged it in PostgreSQL
        assert len(step["attempts"]) == step["attempt_count"] >= 1
        assert step["attempts"][-1]["result"] == "applied" and step["attempts"][-1]["at"]

    refused = ordersaga("sagas", "resolve", "ops-1", "--store", topology.store, "--as", "failed",
                        "--note", "no")  # fmt: skip
    assert refused.code == 2 and "contradict" in refused.err
    resolved = ordersaga("sagas", "resolve", "ops-0", "--store", topology.store, "--as", "failed",
                         "--note", "checked the warehouse", "--by", "bob")  # fmt: skip
    assert resolved.code == 0, resolved.err
    # Streamed orders belong to no API client: the API shows a client its own orders only.
    alice = next(iter(API_KEYS))
    assert get_json(f"{topology.api_url}/orders/ops-0", token=alice)[0] == 404
    for n in range(5):  # alice's own orders; C is out of stock: failed at reserve
        code, body = post_order(topology, order(f"ops-api-{n}", 821_000 + n, "C"), alice)
        assert code == 202, body
    code, api_view = get_json(f"{topology.api_url}/orders/ops-api-0?wait=20", 25, alice)
    assert code == 200 and api_view["outcome"] == "failed", api_view
    resolve = ["sagas", "resolve", "alice,ops-api-0", "--store", topology.store, "--as", "failed"]
    resolved = ordersaga(*resolve, "--note", "checked the warehouse", "--by", "bob")
    assert resolved.code == 0, resolved.err
    code, api_view = get_json(f"{topology.api_url}/orders/ops-api-0", token=alice)
    assert code == 200 and api_view["outcome"] == "failed"
    assert api_view["order_id"] == "ops-api-0"
    assert [(a["action"], a["who"]) for a in api_view["actions"]] == [("resolve failed", "bob")]
    assert api_view["cause"] == "business" and api_view["step"] == "reserve"
    reserve = api_view["steps"][0]
    assert reserve["step"] == "reserve" and reserve["attempts"][-1]["result"] == "refused"
    for n in range(1, 5):
        assert get_json(f"{topology.api_url}/orders/ops-api-{n}?wait=20", 25, alice)[0] == 200

    code, page = get_json(f"{topology.api_url}/orders?status=failed&limit=3", token=alice)
    assert code == 200 and len(page["orders"]) == 3 and page["next_cursor"]
    code, second = get_json(f"{topology.api_url}/orders?status=failed&limit=3"
                            f"&cursor={page['next_cursor']}", token=alice)  # fmt: skip
    assert code == 200
    first_ids = [o["order_id"] for o in page["orders"]]
    assert not set(first_ids) & {o["order_id"] for o in second["orders"]}
    assert all(o["status"] == "failed" for o in page["orders"] + second["orders"])
    assert all(o["order_id"].startswith("ops-api-") for o in page["orders"] + second["orders"])
    code, bad = get_json(f"{topology.api_url}/orders?limit=0", token=alice)
    assert code == 400 and "limit" in bad["error"]


def post_order(topology: Topology, line: str, key: str) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"{topology.api_url}/orders",
        data=line.encode(),
        headers={"Content-Type": "text/plain", "Authorization": f"Bearer {key}"},
        method="POST",
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def test_workers_lists_the_live_workers_with_their_pids(topology: Topology) -> None:
    result = ordersaga("workers", "--store", topology.store, "--json")
    assert result.code == 0, result.err
    rows = {r["worker_id"]: r for r in _jsons(result.out)}
    for worker in topology.workers:
        if worker.alive():
            assert worker.proc is not None
            assert rows[worker.name]["live"] is True
            assert rows[worker.name]["pid"] == worker.proc.pid
            assert rows[worker.name]["heartbeat_age_s"] < 10
    table = ordersaga("workers", "--store", topology.store)
    assert table.code == 0 and "live workers" in table.out
