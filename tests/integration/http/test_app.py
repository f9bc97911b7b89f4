"""The service app's HTTP contract, called in process (ASGI): every status code of the table."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ordersaga.orders.demo import demo_world
from ordersaga.participant.http import create_app
from ordersaga.participant.openapi import SERVICE_ACTIONS
from ordersaga.protocol.messages import Command, KeyState, Probe, Reply, ReplyStatus, make_key
from ordersaga.protocol.wire import encode_key
from ordersaga.services.factory import ServiceConfigs, open_service
from ordersaga.services.inventory import InventoryService
from tests.integration.services.helpers import dump, open_inventory, release, reserve

TABLES = ("items", "reservations", "idempotency")


@pytest.fixture
async def inventory(tmp_path: Path) -> AsyncIterator[InventoryService]:
    service = await open_inventory(f"sqlite:///{tmp_path / 'inventory.db'}")
    yield service
    await service.close()


@pytest.fixture
async def client(inventory: InventoryService) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(inventory, name="inventory", max_body_bytes=4096)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


async def post(
    client: httpx.AsyncClient, command: Command, *, raw: bytes | None = None
) -> httpx.Response:
    body = json.dumps(dict(command.payload)).encode() if raw is None else raw
    headers = {"Idempotency-Key": encode_key(command.key)}
    return await client.post(f"/commands/{command.action}", content=body, headers=headers)


async def test_ok_and_its_replay_are_200_with_the_same_body(client: httpx.AsyncClient) -> None:
    first = await post(client, reserve("s1", ("A", 2)))
    again = await post(client, reserve("s1", ("A", 2)))
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    assert first.json()["status"] == "ok" and first.json()["body"]["items_cents"] == 2500


async def test_conflict_refusal_and_invalid_have_their_codes(
    client: httpx.AsyncClient, inventory: InventoryService
) -> None:
    assert (await post(client, reserve("s1", ("A", 2)))).status_code == 200
    before = await dump(inventory.db, TABLES)
    conflict = await post(client, reserve("s1", ("A", 3)))
    assert (conflict.status_code, conflict.json()["status"]) == (409, "conflict")
    invalid = await post(client, reserve("s2", ("A", 0)))
    assert (invalid.status_code, invalid.json()["status"]) == (400, "invalid")
    assert await dump(inventory.db, TABLES) == before  # neither changed anything
    refused = await post(client, reserve("s3", ("C", 1)))
    assert (refused.status_code, refused.json()["status"]) == (422, "refused")
    assert "stock" in refused.json()["reason"]


@pytest.mark.parametrize(
    ("headers", "body", "reason"),
    [
        ({}, b'{"order_id": "o"}', "missing Idempotency-Key"),
        ({"Idempotency-Key": "s:inventory:action"}, b"", "empty"),
        ({"Idempotency-Key": "s:inventory:action"}, b"{not json", "not JSON"),
        ({"Idempotency-Key": "s:inventory:action"}, b'{"x": NaN}', "NaN"),
        ({"Idempotency-Key": "s:inventory:action"}, b"\xff\xfe", "UTF-8"),
        ({"Idempotency-Key": "s:inventory:action"}, b"[1, 2]", "must be an object"),
        ({"Idempotency-Key": "s:inventory:action"}, b"[" * 4000, "nested"),
        ({"Idempotency-Key": "s:inventory:action"}, b"1" * 5000, "4096"),
        ({"Idempotency-Key": "%ff:inventory:action"}, b"{}", "UTF-8"),
        ({"Idempotency-Key": "s:inventory:compensate"}, b"{}", "needs a action key"),
        ({"Idempotency-Key": "no-phase"}, b"{}", "idempotency key"),
    ],
)
async def test_malformed_requests_are_400_or_413_and_change_nothing(
    client: httpx.AsyncClient,
    inventory: InventoryService,
    headers: dict[str, str],
    body: bytes,
    reason: str,
) -> None:
    before = await dump(inventory.db, TABLES)
    response = await client.post("/commands/reserve", content=body, headers=headers)
    assert response.status_code in (400, 413), response.text
    assert response.json()["status"] == "invalid"
    assert reason in response.json()["reason"]
    assert await dump(inventory.db, TABLES) == before


async def test_oversized_body_is_413(client: httpx.AsyncClient) -> None:
    payload = {"order_id": "o", "items": [{"item_id": "A", "quantity": 1}], "pad": "x" * 5000}
    response = await post(client, reserve("s1", ("A", 1)), raw=json.dumps(payload).encode())
    assert response.status_code == 413 and response.json()["status"] == "invalid"


async def test_an_unknown_action_is_answered_by_the_service(client: httpx.AsyncClient) -> None:
    command = Command("inventory", "explode", "s:inventory:action", {"order_id": "o"})
    response = await post(client, command)
    assert response.status_code == 400
    assert response.json()["reason"] == "unknown action 'explode' for service 'inventory'"


async def test_keys_travel_percent_encoded_or_as_structured_strings(
    client: httpx.AsyncClient,
) -> None:
    command = reserve("Bestellung-ü7%", ("A", 1))
    assert (await post(client, command)).status_code == 200
    probe = await client.get(f"/keys/{encode_key(command.key)}")
    assert probe.json()["state"] == "applied"
    quoted = '"' + command.key.replace("ü", "u") + '"'
    body = json.dumps(dict(command.payload)).encode()
    response = await client.post(
        "/commands/reserve", content=body, headers={"Idempotency-Key": quoted}
    )
    assert response.status_code == 200  # another saga id ("u"), same content: applied


async def test_probe_states(client: httpx.AsyncClient) -> None:
    await post(client, reserve("s1", ("A", 1)))
    await post(client, reserve("s2", ("C", 1)))
    await post(client, release("s3"))  # a tombstone: the action can never apply

    async def state(key: str) -> tuple[int, str, Any]:
        response = await client.get(f"/keys/{encode_key(key)}")
        return response.status_code, response.json()["state"], response.json()["reply"]

    assert (await state(reserve("s1").key))[:2] == (200, "applied")
    assert (await state(reserve("s2").key))[:2] == (200, "refused")
    assert (await state(reserve("s3").key))[:2] == (200, "refused")
    assert await state(reserve("s4").key) == (200, "unknown", None)
    assert await state("not a key") == (200, "unknown", None)


async def test_health_stats_and_the_database_going_away(
    client: httpx.AsyncClient, inventory: InventoryService
) -> None:
    health = await client.get("/health")
    assert (health.status_code, health.json()) == (200, {"status": "ok", "service": "inventory"})
    await post(client, reserve("s1", ("A", 1)))
    stats = (await client.get("/stats")).json()
    assert stats["service"] == "inventory" and stats["commands"] >= 1
    assert stats["http_responses"]["200"] >= 2
    await inventory.db.close()  # the database is gone: 503, never a definite answer
    down = await post(client, reserve("s2", ("A", 1)))
    assert down.status_code == 503 and down.headers["Retry-After"] == "1"
    assert (await client.get("/health")).status_code == 503
    assert (await client.get(f"/keys/{encode_key(reserve('s1').key)}")).status_code == 503


class _InFlight:
    name = "inventory"

    async def handle(self, command: Command) -> Reply:
        return Reply(ReplyStatus.IN_FLIGHT)

    async def probe(self, key: str) -> Probe:
        return Probe(KeyState.UNKNOWN)

    async def close(self) -> None:
        return None


async def test_in_flight_is_425_with_retry_after() -> None:
    transport = httpx.ASGITransport(app=create_app(_InFlight(), name="inventory"))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        response = await post(http, reserve("s1", ("A", 1)))
    assert response.status_code == 425 and response.headers["Retry-After"] == "1"
    assert response.json() == {"status": "in_flight", "body": {}, "reason": None}


async def test_an_opener_is_opened_at_startup_and_closed_at_shutdown() -> None:
    events: list[str] = []

    class Opened(_InFlight):
        async def close(self) -> None:
            events.append("closed")

    async def opener() -> Opened:
        events.append("opened")
        return Opened()

    app = create_app(opener, name="inventory")
    async with app.router.lifespan_context(app):
        assert events == ["opened"]
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            assert (await http.get("/health")).status_code == 200
    assert events == ["opened", "closed"]


async def test_openapi_documents_every_action_code_and_the_key_header(
    client: httpx.AsyncClient,
) -> None:
    schema = (await client.get("/openapi.json")).json()
    paths = schema["paths"]
    assert {"/commands/reserve", "/commands/release", "/commands/commit"} <= set(paths)
    assert {"/keys/{key}", "/health", "/stats"} <= set(paths)
    reserve_op = paths["/commands/reserve"]["post"]
    assert set(reserve_op["responses"]) == {
        "200",
        "400",
        "408",
        "409",
        "410",
        "413",
        "422",
        "425",
        "503",
    }
    (header,) = reserve_op["parameters"]
    assert header["name"] == "Idempotency-Key" and header["in"] == "header"
    assert header["schema"]["pattern"].endswith(":action$")
    body = reserve_op["requestBody"]["content"]["application/json"]
    assert body["schema"]["required"] == ["order_id", "items"]


@pytest.mark.parametrize("name", ["inventory", "shipping", "payment"])
async def test_the_documented_actions_are_the_services_actions(name: str, tmp_path: Path) -> None:
    world = demo_world()
    configs = ServiceConfigs(world.inventory, world.shipping, world.payment)
    service = await open_service(name, f"sqlite:///{tmp_path / 'db'}", configs, durable=False)
    try:
        documented = {(doc.name, doc.phase) for doc in SERVICE_ACTIONS[name]}
        assert documented == {(action.name, action.phase) for action in service.actions()}
        for doc in SERVICE_ACTIONS[name]:  # every documented example is a well-formed payload
            command = Command(name, doc.name, make_key("ex", "step", doc.phase), doc.example)
            assert (await service.handle(command)).status is not ReplyStatus.INVALID, doc.name
    finally:
        await service.close()
