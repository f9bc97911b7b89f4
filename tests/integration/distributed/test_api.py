"""The order intake API (`ordersaga serve api`) in front of the workers: POST and GET semantics."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.integration.http.conftest import get_json

from .conftest import API_KEYS, Topology, order

pytestmark = pytest.mark.pg


ALICE, BOB = (key for key in API_KEYS)


def post(
    topology: Topology, body: str, content_type: str = "text/plain", key: str | None = ALICE
) -> tuple[int, dict[str, str], Any]:
    headers = {"Content-Type": content_type}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(
        f"{topology.api_url}/orders", data=body.encode(), headers=headers, method="POST"
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, _lower(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, _lower(exc.headers), json.loads(exc.read() or b"null")


def _lower(headers: Any) -> dict[str, str]:
    return {key.lower(): value for key, value in headers.items()}


def test_an_order_is_accepted_executed_and_reported_step_by_step(topology: Topology) -> None:
    line = order("api-1", 811_001, "K", qty=2)
    code, headers, body = post(topology, line)
    assert code == 202, body
    assert headers["location"] == "/orders/api-1" == body["url"]
    assert body["order_id"] == "api-1" and body["status"] in ("running", "confirming", "confirmed")
    code, view = get_json(f"{topology.api_url}/orders/api-1?wait=20", timeout=25, token=ALICE)
    assert code == 200, view
    assert view["status"] == "confirmed" and view["outcome"] == "confirmed"
    assert view["reason"] is None
    steps = [(s["step"], s["phase"], s["status"]) for s in view["steps"]]
    assert steps == [
        ("reserve", "action", "succeeded"),
        ("ship", "action", "succeeded"),
        ("pay", "action", "succeeded"),
        ("commit", "confirm", "succeeded"),
        ("schedule", "confirm", "succeeded"),
        ("capture", "confirm", "succeeded"),
    ]
    for step in view["steps"]:
        assert step["attempt_count"] >= 1 and step["started_at"] <= step["ended_at"]
        # The whole trail: every attempt with its time, duration and result.
        assert len(step["attempts"]) == step["attempt_count"]
        assert step["attempts"][-1]["result"] == "applied"
        assert step["attempts"][0]["at"] >= step["started_at"]
        assert all(a["duration_ms"] >= 0 for a in step["attempts"])

    # The same order again, in the JSON form: the same resource, not executed again.
    same = {
        "order_id": "api-1",
        "user_id": 811_001,
        "items": [{"item_id": "K", "quantity": 2}],
        "payment_info": {"method": "PayPal"},
        "shipping_address": "1 Main St, Springfield, US",
    }
    code, headers, again = post(topology, json.dumps(same, indent=2), "application/json")
    assert code == 200 and headers["location"] == "/orders/api-1"
    assert again["status"] == "confirmed" and again["steps"] == view["steps"]
    # The same id with other content: a conflict, the first order untouched.
    code, _, conflict = post(topology, order("api-1", 811_001, "K", qty=3))
    assert code == 409 and conflict["order"] == "/orders/api-1"
    assert get_json(f"{topology.api_url}/orders/api-1", token=ALICE)[1]["steps"] == view["steps"]


def test_an_invalid_order_is_refused_with_every_reason_and_garbage_too(topology: Topology) -> None:
    code, _, body = post(topology, "Order api-2, User nobody, Items: [{K, 1}]")
    assert code == 422 and "Payment" in body["reasons"][0]
    assert get_json(f"{topology.api_url}/orders/api-2", token=ALICE)[0] == 404  # nothing stored
    broken = {
        "order_id": "api-2",
        "user_id": -1,
        "items": [{"item_id": "K", "quantity": 0}],
        "payment_info": {"method": "CreditCard", "card_number": "4111-1111-1111-1111"},
    }
    code, _, body = post(topology, json.dumps(broken), "application/json")
    assert code == 422, body
    assert len(body["reasons"]) == 4, body  # user id, quantity, card number, address
    assert "4111-1111-1111-1111" not in json.dumps(body) and "****1111" in json.dumps(body)
    # The corrected order is accepted under the same id.
    code, headers, body = post(topology, order("api-2", 811_003, "K"))
    assert code == 202 and headers["location"] == "/orders/api-2", body
    for garbage, content_type in (
        ("not an order", "text/plain"),
        ("", "text/plain"),
        ('{"order_id": ', "application/json"),
        ("[1, 2]", "application/json"),
        (order("api-3", 1, "K") + "\n" + order("api-4", 1, "K"), "text/plain"),
    ):
        code, _, error = post(topology, garbage, content_type)
        assert code == 400, (garbage, error)
        assert error["error"]
    assert get_json(f"{topology.api_url}/orders/api-3", token=ALICE)[0] == 404


def test_odd_order_ids_are_percent_encoded_in_urls(topology: Topology) -> None:
    code, headers, body = post(topology, order("a/b?c#d%e", 811_002, "K"))
    assert code == 202, body
    assert headers["location"] == "/orders/a%2Fb%3Fc%23d%25e"
    code, view = get_json(
        f"{topology.api_url}{headers['location']}?wait=20", timeout=25, token=ALICE
    )
    assert code == 200 and view["order_id"] == "a/b?c#d%e" and view["outcome"] == "confirmed"
    assert get_json(f"{topology.api_url}/orders/api-1?wait=x", token=ALICE)[0] == 400
    assert get_json(f"{topology.api_url}/orders/nope", token=ALICE)[0] == 404


def test_the_api_documents_itself_and_reports_health_and_counts(topology: Topology) -> None:
    code, schema = get_json(f"{topology.api_url}/openapi.json")
    assert code == 200
    assert set(schema["paths"]) >= {"/orders", "/orders/{order_id}", "/health", "/stats"}
    assert set(schema["paths"]["/orders"]["post"]["responses"]) >= {"200", "202", "400", "409"}
    code, stats = get_json(f"{topology.api_url}/stats", token=ALICE)
    assert code == 200
    assert set(stats["sagas"]) == {"running", "compensating", "confirming", "confirmed", "failed"}
    assert get_json(f"{topology.api_url}/health") == (200, {"status": "ok", "service": "api"})


def _get(topology: Topology, path: str, key: str | None) -> tuple[int, dict[str, str], Any]:
    headers = {} if key is None else {"Authorization": f"Bearer {key}"}
    request = urllib.request.Request(f"{topology.api_url}{path}", headers=headers)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, _lower(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, _lower(exc.headers), json.loads(exc.read() or b"null")


def test_orders_belong_to_the_client_that_posted_them(topology: Topology) -> None:
    # Key-less, or with a wrong key: 401 and nothing is created.
    for key in (None, "key-mallory-0123456789abcdef"):
        code, headers, _ = post(topology, order("own-1", 812_001, "K"), key=key)
        assert code == 401 and headers["www-authenticate"].startswith("Bearer")
        code, headers, _ = _get(topology, "/orders/own-1", key)
        assert code == 401 and headers["www-authenticate"].startswith("Bearer")
        assert _get(topology, "/stats", key)[0] == 401
    assert _get(topology, "/orders/own-1", ALICE)[0] == 404
    # Alice's order; Bob can neither read it nor squat its id: his own "own-1" is another order.
    code, _, mine = post(topology, order("own-1", 812_001, "K"), key=ALICE)
    assert code == 202, mine
    assert _get(topology, "/orders/own-1", BOB)[0] == 404
    code, _, his = post(topology, order("own-1", 812_002, "K", qty=2), key=BOB)
    assert code == 202, his
    code, _, view = _get(topology, "/orders/own-1?wait=20", ALICE)
    assert code == 200 and view["order_id"] == "own-1" and view["outcome"] == "confirmed"
    assert post(topology, order("own-1", 812_001, "K"), key=ALICE)[0] == 200  # resubmission
    rows = topology.sql("SELECT saga_id FROM sagas WHERE saga_id LIKE '%own-1' ORDER BY 1")
    assert [row["saga_id"] for row in rows] == ["alice,own-1", "bob,own-1"]
    # Each client's list holds its own orders only, by the ids it gave them.
    for key in (ALICE, BOB):
        code, _, page = _get(topology, "/orders?limit=500", key)
        assert code == 200, page
        ids = [row["order_id"] for row in page["orders"]]
        assert "own-1" in ids and not any("," in order_id for order_id in ids)
        assert all("worker" not in row for row in page["orders"])
    code, _, bobs = _get(topology, "/orders?limit=500", BOB)
    assert {row["order_id"] for row in bobs["orders"]} == {"own-1"}


def test_odd_ids_get_a_4xx_never_a_5xx(topology: Topology) -> None:
    for path in ("/orders/%00", "/orders/%ED%A0%80", "/orders/a%00b?wait=1", "/orders/"):
        code, _, body = _get(topology, path, ALICE)
        assert 400 <= code < 500, (path, code, body)
        assert "sql" not in json.dumps(body).lower() and "postgres" not in json.dumps(body).lower()
    code, _, body = post(topology, '{"order_id": "\\ud800", "user_id": 1}', "application/json")
    assert 400 <= code < 500, body


def test_the_order_body_is_documented_by_a_real_schema(topology: Topology) -> None:
    code, schema = get_json(f"{topology.api_url}/openapi.json")
    assert code == 200
    body = schema["paths"]["/orders"]["post"]["requestBody"]["content"]["application/json"]
    assert set(body["schema"]["required"]) >= {"order_id", "user_id", "items", "payment_info"}
    assert {"Item", "Payment", "Address"} <= set(schema["components"]["schemas"])
    assert schema["components"]["securitySchemes"]["bearerToken"]["scheme"] == "bearer"
    assert schema["paths"]["/orders"]["post"]["security"] == [{"bearerToken": []}]
    assert "security" not in schema["paths"]["/health"]["get"]
