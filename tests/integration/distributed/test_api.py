"""The order intake API (`ordersaga serve api`) in front of the workers: POST and GET semantics."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.integration.http.conftest import get_json

from .conftest import Topology, order

pytestmark = pytest.mark.pg


def post(
    topology: Topology, body: str, content_type: str = "text/plain"
) -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(
        f"{topology.api_url}/orders",
        data=body.encode(),
        headers={"Content-Type": content_type},
        method="POST",
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
    code, view = get_json(f"{topology.api_url}/orders/api-1?wait=20", timeout=25)
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
        assert step["attempts"] >= 1 and step["started_at"] <= step["ended_at"]

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
    assert get_json(f"{topology.api_url}/orders/api-1")[1]["steps"] == view["steps"]


def test_an_invalid_order_is_recorded_failed_and_garbage_is_refused(topology: Topology) -> None:
    code, headers, body = post(topology, "Order api-2, User nobody, Items: [{K, 1}]")
    assert code == 202 and headers["location"] == "/orders/api-2"
    assert body["status"] == "failed" and body["outcome"] == "failed"
    assert body["reason"].startswith("invalid order:") and body["steps"] == []
    assert post(topology, "Order api-2, User nobody, Items: [{K, 1}]")[0] == 200
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
    assert get_json(f"{topology.api_url}/orders/api-3")[0] == 404


def test_odd_order_ids_are_percent_encoded_in_urls(topology: Topology) -> None:
    code, headers, body = post(topology, order("a/b?c#d%e", 811_002, "K"))
    assert code == 202, body
    assert headers["location"] == "/orders/a%2Fb%3Fc%23d%25e"
    code, view = get_json(f"{topology.api_url}{headers['location']}?wait=20", timeout=25)
    assert code == 200 and view["order_id"] == "a/b?c#d%e" and view["outcome"] == "confirmed"
    assert get_json(f"{topology.api_url}/orders/api-1?wait=x")[0] == 400
    assert get_json(f"{topology.api_url}/orders/nope")[0] == 404


def test_the_api_documents_itself_and_reports_health_and_counts(topology: Topology) -> None:
    code, schema = get_json(f"{topology.api_url}/openapi.json")
    assert code == 200
    assert set(schema["paths"]) >= {"/orders", "/orders/{order_id}", "/health", "/stats"}
    assert set(schema["paths"]["/orders"]["post"]["responses"]) >= {"200", "202", "400", "409"}
    code, stats = get_json(f"{topology.api_url}/stats")
    assert code == 200
    assert set(stats["sagas"]) == {"running", "compensating", "confirming", "confirmed", "failed"}
    assert get_json(f"{topology.api_url}/health") == (200, {"status": "ok", "service": "api"})
