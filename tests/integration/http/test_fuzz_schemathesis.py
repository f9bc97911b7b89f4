"""Property-based API fuzzing (schemathesis) of each service app against its own OpenAPI schema.

For every generated request, valid or not: no 5xx, the response conforms to the schema (status
code documented, body shaped as documented), and the database tells the same story as the code:

* 400 / 409 / 413 (invalid, conflict) and every GET: nothing changed at all;
* 422 (a business refusal): no business state changed; only the refusal's own records may
  appear (its idempotency record, and for payment the ``declined`` payment it records);
* 200 on a command: sending it again replays the same answer and changes nothing (a batch's
  ``expired`` items but their reason, which counts the seconds since they were sent).

The apps run in process (ASGI) on SQLite files of their own, each requiring a service token
(which the generated requests carry, but those that test a missing one); the example budget keeps
the whole module to a few seconds per service (the ``ci`` Hypothesis profile multiplies it). The
examples are random, not derandomized: each run tries new requests; every health check is on.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import settings
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from ordersaga.orders.demo import demo_world
from ordersaga.participant.http import create_app
from ordersaga.services.factory import ServiceConfigs, open_service
from tests.hypothesis_profiles import examples

EXAMPLES = 40
BASE_URL = "http://testserver"
TOKEN = "fuzz-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
#: Rows a refusal may add: its own record, never a change to business state.
REFUSAL_RECORDS = {"idempotency": None, "payments": ("state", "declined")}

Snapshot = dict[str, list[tuple[Any, ...]]]


class Fuzzed:
    """One service app on its own SQLite file, and a reader of that file."""

    def __init__(self, service: str, directory: Path) -> None:
        self.service = service
        self.path = directory / f"{service}.db"
        world = demo_world()
        configs = ServiceConfigs(world.inventory, world.shipping, world.payment)
        url = f"sqlite:///{self.path}"

        async def opener() -> Any:
            return await open_service(service, url, configs, durable=False)

        self.app = create_app(opener, name=service, token=TOKEN)

    def snapshot(self) -> Snapshot:
        with sqlite3.connect(self.path) as conn:
            names = [
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            ]
            return {
                name: sorted(map(tuple, conn.execute(f"SELECT * FROM {name}")), key=repr)
                for name in names
            }

    def columns(self, table: str) -> list[str]:
        with sqlite3.connect(self.path) as conn:
            return [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]


def _business(fuzzed: Fuzzed, snapshot: Snapshot) -> Snapshot:
    """``snapshot`` without the records a refusal is allowed to add."""
    result = {}
    for table, rows in snapshot.items():
        rule = REFUSAL_RECORDS.get(table, ())
        if table in REFUSAL_RECORDS and rule is None:
            continue
        if rule:
            column, value = rule
            index = fuzzed.columns(table).index(column)
            rows = [row for row in rows if row[index] != value]
        result[table] = rows
    return result


def _check(fuzzed: Fuzzed, case: Any) -> None:
    case.headers = {**(case.headers or {}), **AUTH}
    before = fuzzed.snapshot()
    response = case.call(base_url=BASE_URL, app=fuzzed.app)
    case.validate_response(
        response,
        checks=[status_code_conformance, content_type_conformance, response_schema_conformance],
    )
    code = response.status_code
    assert code < 500, (code, response.text)
    # Schemathesis also tries requests without the security the schema declares: those must be
    # refused, and the others (which carry the token) must get through.
    authorized = response.request.headers.get("Authorization") == AUTH["Authorization"]
    assert (code != 401) if authorized else (code == 401), (code, response.text)
    after = fuzzed.snapshot()
    if case.method.upper() == "GET" or code in (400, 401, 409, 413):
        assert after == before, (code, response.text)
    elif code == 422:
        assert _business(fuzzed, after) == _business(fuzzed, before), response.text
    elif code == 200:
        again = case.call(base_url=BASE_URL, app=fuzzed.app)
        assert (again.status_code, _replayed(again.json())) == (200, _replayed(response.json()))
        assert fuzzed.snapshot() == after


def _replayed(answer: Any) -> Any:
    """What a replay must repeat of an answer: all of it but the reason of a batch's ``expired``
    items, which says how many seconds ago the command was sent (it changes as time passes)."""
    if isinstance(answer, dict) and isinstance(answer.get("replies"), list):
        replies = [
            {**reply, "reason": None} if reply.get("status") == "expired" else reply
            for reply in answer["replies"]
        ]
        return {**answer, "replies": replies}
    return answer


SETTINGS = settings(max_examples=examples(EXAMPLES), deadline=None, database=None)


def _schema(service: str) -> Any:
    """The schema, from the app's own OpenAPI document (building it opens no database)."""

    async def unused() -> Any:
        raise AssertionError("never opened")

    return schemathesis.openapi.from_dict(create_app(unused, name=service, token=TOKEN).openapi())


def _fixture(service: str) -> Any:
    @pytest.fixture(scope="module")
    def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
        opened = Fuzzed(service, tmp_path_factory.mktemp(service))
        # Start the app (its lifespan opens and seeds the database) before the first snapshot.
        with asgi.get_client(opened.app) as client:  # type: ignore[arg-type]
            assert client.get("/health").status_code == 200
        yield opened

    return fuzzed


inventory_app = _fixture("inventory")
shipping_app = _fixture("shipping")
payment_app = _fixture("payment")


@_schema("inventory").parametrize()  # type: ignore[untyped-decorator]
@SETTINGS
def test_inventory_api(case: Any, inventory_app: Fuzzed) -> None:
    _check(inventory_app, case)


@_schema("shipping").parametrize()  # type: ignore[untyped-decorator]
@SETTINGS
def test_shipping_api(case: Any, shipping_app: Fuzzed) -> None:
    _check(shipping_app, case)


@_schema("payment").parametrize()  # type: ignore[untyped-decorator]
@SETTINGS
def test_payment_api(case: Any, payment_app: Fuzzed) -> None:
    _check(payment_app, case)
