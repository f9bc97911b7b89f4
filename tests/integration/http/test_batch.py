"""The batch command endpoint (``POST /commands``) and the transport's natural batching, against
a real `ordersaga serve` process (with a service token) and stub servers.

A batch answers each command what its own request would, in order and in one group commit; sent
twice it replays every reply and applies nothing twice; a malformed batch is a 4xx, never a 5xx.
Under concurrency the transport carries many commands per request; a lost batch leaves every
command in it with an unknown outcome.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from ordersaga.errors import AccessRefused, RequestLost, ResponseLost
from ordersaga.protocol.batchwire import MAX_BATCH_COMMANDS
from ordersaga.protocol.messages import Command, KeyState, Phase, Reply, ReplyStatus, make_key
from ordersaga.transport.faults import FaultInjector, FaultSettings
from ordersaga.transport.http import HttpSettings, HttpTransport
from tests.integration.http.conftest import Handler, ServiceProcess, sqlite_url

TOKEN = "batch-test-token"


@pytest.fixture(scope="module")
def inventory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    directory = tmp_path_factory.mktemp("batch")
    process = ServiceProcess(
        "inventory", sqlite_url(directory, "inventory"), directory, token=TOKEN
    )
    try:
        yield process.start()
    finally:
        process.kill()


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(trust_env=False) as session:
        yield session


async def _post(
    session: aiohttp.ClientSession, url: str, body: Any, token: str | None = TOKEN
) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with session.post(f"{url}/commands", data=data, headers=headers) as response:
        return response.status, await response.json(content_type=None)


def _reserve(order: str, item: str = "A", quantity: int = 1) -> dict[str, Any]:
    return {
        "action": "reserve",
        "key": make_key(order, "reserve", Phase.ACTION),
        "payload": {"order_id": order, "items": [{"item_id": item, "quantity": quantity}]},
    }


async def test_a_batch_answers_each_command_in_order_and_replays_whole(
    inventory: ServiceProcess, client: aiohttp.ClientSession
) -> None:
    ok = [_reserve(f"b-ok-{i}") for i in range(5)]
    out_of_stock = _reserve("b-none", item="C")
    unknown_action = {**_reserve("b-x"), "action": "teleport"}
    wrong_phase = {**_reserve("b-phase"), "key": make_key("b-phase", "reserve", Phase.CONFIRM)}
    commands = [*ok, out_of_stock, {"key": 7}, unknown_action, wrong_phase, [1]]
    before = inventory.stats()
    status, body = await _post(client, inventory.url, {"commands": commands})
    assert status == 200, body
    replies = body["replies"]
    assert [r["code"] for r in replies] == [200] * 5 + [422, 400, 400, 400, 400]
    assert [r["status"] for r in replies[:6]] == ["ok"] * 5 + ["refused"]
    assert "commands[6]" in replies[6]["reason"] and "commands[9]" in replies[9]["reason"]
    assert all(r["body"]["lines"][0]["item_id"] == "A" for r in replies[:5])
    middle = inventory.stats()
    assert middle["applied"] - before["applied"] == 6  # the refusal is recorded too
    assert middle["commits"] - before["commits"] == 1  # one group commit for the whole batch

    # The same batch again: every reply replayed, nothing applied twice; another payload under
    # a used key is a conflict.
    conflicting = {
        **ok[0],
        "payload": {**ok[0]["payload"], "items": [{"item_id": "B", "quantity": 1}]},
    }
    status, again = await _post(client, inventory.url, {"commands": [*commands, conflicting]})
    assert status == 200
    assert again["replies"][:10] == replies
    assert again["replies"][10]["code"] == 409
    after = inventory.stats()
    assert after["applied"] == middle["applied"]
    assert after["replays"] - middle["replays"] == 6


@pytest.mark.parametrize(
    ("body", "code", "says"),
    [
        (b"{not json", 400, "not JSON"),
        (b"", 400, "empty"),
        (b"[]", 400, "object"),
        (b'{"commands": "x"}', 400, "commands"),
        (b'{"commands": []}', 400, "at least one"),
        (b'{"commands": [{"action": "reserve", "key": "a:b:action", "payload": NaN}]}', 400, ""),
        (b'{"commands": [' + b"{}," * MAX_BATCH_COMMANDS + b"{}]}", 413, "at most"),
        (b'{"commands": ["' + b"x" * (300 * 1024) + b'"]}', 413, "larger"),
    ],
)
async def test_malformed_batches_are_refused_whole_with_a_4xx(
    inventory: ServiceProcess, client: aiohttp.ClientSession, body: bytes, code: int, says: str
) -> None:
    before = inventory.stats()
    status, answer = await _post(client, inventory.url, body)
    assert (status, answer["status"]) == (code, "invalid")
    assert says in answer["reason"]
    assert inventory.stats()["commands"] == before["commands"]


async def test_bad_items_get_their_own_4xx(
    inventory: ServiceProcess, client: aiohttp.ClientSession
) -> None:
    items = [
        {**_reserve("i-1"), "sent_at": "yesterday"},
        {**_reserve("i-2"), "traceparent": 5},
        {**_reserve("i-2b"), "sent_at": 10**400},
        {"action": "reserve", "key": "i-3:reserve:action"},
        {**_reserve("i-4"), "payload": [1, 2]},
        {**_reserve("i-5"), "sent_at": 1.0},  # long ago: expired, nothing applied
        _reserve("i-6"),
    ]
    status, body = await _post(client, inventory.url, {"commands": items})
    assert status == 200
    assert [r["code"] for r in body["replies"]] == [400, 400, 400, 400, 400, 410, 200]


async def test_a_batch_needs_the_service_token(
    inventory: ServiceProcess, client: aiohttp.ClientSession
) -> None:
    status, _ = await _post(client, inventory.url, {"commands": [_reserve("t-1")]}, token=None)
    assert status == 401


async def test_the_transport_batches_under_concurrency_and_keeps_idempotency(
    inventory: ServiceProcess,
) -> None:
    commands = [
        Command("inventory", "reserve", make_key(f"c-{i}", "reserve", Phase.ACTION), p["payload"])
        for i, p in enumerate(_reserve(f"c-{i}", item="B") for i in range(200))
    ]
    http = HttpTransport({"inventory": inventory.url}, HttpSettings(token=TOKEN))
    try:
        before = inventory.stats()
        first = await asyncio.gather(*(http.send(c) for c in commands))
        middle = inventory.stats()
        again = await asyncio.gather(*(http.send(c) for c in commands))
        after = inventory.stats()
        probe = await http.probe("inventory", commands[-1].key)
    finally:
        await http.close()
    assert all(reply.status is ReplyStatus.OK for reply in first)
    assert again == first
    assert middle["applied"] - before["applied"] == 200
    assert after["applied"] == middle["applied"]
    assert after["replays"] - middle["replays"] == 200
    requests = sum(middle["http_responses"].values()) - sum(before["http_responses"].values())
    assert requests <= 200 // 8, f"{requests} requests for 200 concurrent commands"
    assert probe.state is KeyState.APPLIED


async def test_one_command_at_a_time_goes_alone(inventory: ServiceProcess) -> None:
    http = HttpTransport({"inventory": inventory.url}, HttpSettings(token=TOKEN))
    try:
        for i in range(3):
            command = Command("inventory", **_as_command(_reserve(f"s-{i}")))
            assert (await http.send(command)).ok
        assert http._batchers["inventory"].requests == 3
        assert http._batchers["inventory"].items == 3
    finally:
        await http.close()


async def test_faults_strike_each_batched_call(inventory: ServiceProcess) -> None:
    """The fault injector wraps the batching transport: each call suffers its own faults."""
    http = HttpTransport({"inventory": inventory.url}, HttpSettings(token=TOKEN))
    faults = FaultInjector(http, FaultSettings(rate=0.2, seed=7, max_late=0.01))
    commands = [
        Command("inventory", **_as_command(_reserve(f"f-{i}", item="B"))) for i in range(60)
    ]

    async def until_answered(command: Command) -> Reply:
        while True:
            try:
                return await faults.send(command)
            except (ResponseLost, RequestLost):
                continue

    try:
        replies = await asyncio.gather(*(until_answered(c) for c in commands))
        await faults.drain()
    finally:
        await faults.close()
    assert all(reply.ok for reply in replies)
    assert all(faults.counts[name] > 0 for name in ("request_lost", "response_lost", "duplicate"))
    assert http._batchers["inventory"].items > http._batchers["inventory"].requests


def _as_command(item: dict[str, Any]) -> dict[str, Any]:
    return {"action": item["action"], "key": item["key"], "payload": item["payload"]}


_OK = {"status": "ok", "body": {"n": 1}, "reason": None}


async def _concurrently(url: str, n: int = 20) -> list[Reply | BaseException]:
    http = HttpTransport({"inventory": url})
    commands = [
        Command("inventory", "reserve", f"x-{i}:reserve:action", {"order_id": str(i)})
        for i in range(n)
    ]
    try:
        return await asyncio.gather(*(http.send(c) for c in commands), return_exceptions=True)
    finally:
        await http.close()


@pytest.mark.parametrize("missing", [404, 405, 413])
async def test_a_service_without_batches_gets_one_request_per_command(
    stub: Callable[[Handler], Awaitable[str]], missing: int
) -> None:
    paths: list[str] = []

    async def old_service(request: web.Request) -> web.StreamResponse:
        paths.append(request.path)
        if request.path == "/commands":
            return web.Response(status=missing)
        return web.json_response(_OK)

    replies = await _concurrently(await stub(old_service))
    assert replies == [Reply(ReplyStatus.OK, {"n": 1}, None)] * 20
    assert paths.count("/commands/reserve") == 20 and "/commands" in paths


@pytest.mark.parametrize(
    ("status", "text"),
    [
        (500, "oops"),
        (200, "<html>proxy</html>"),
        (200, json.dumps({"replies": [{**_OK, "code": 200}]})),  # too few replies
        (401, "{}"),
    ],
    ids=["5xx", "not-json", "short", "401"],
)
async def test_a_lost_batch_leaves_every_command_unknown(
    stub: Callable[[Handler], Awaitable[str]], status: int, text: str
) -> None:
    async def service(request: web.Request) -> web.StreamResponse:
        assert request.path == "/commands"  # commands ready together leave together
        return web.Response(status=status, text=text, content_type="application/json")

    replies = await _concurrently(await stub(service), n=10)
    lost = AccessRefused if status == 401 else ResponseLost
    assert all(isinstance(r, lost) for r in replies), replies
    assert len({id(r) for r in replies}) == 10  # each caller its own error


async def test_an_item_whose_code_and_status_disagree_is_unknown(
    stub: Callable[[Handler], Awaitable[str]],
) -> None:
    async def service(request: web.Request) -> web.StreamResponse:
        items = (await request.json())["commands"]
        replies = [{**_OK, "code": 422} for _ in items]  # says ok under a refusal's code
        replies[0] = {**_OK, "code": 200}
        return web.json_response({"replies": replies})

    replies = await _concurrently(await stub(service), n=10)
    assert replies[0] == Reply(ReplyStatus.OK, {"n": 1}, None)
    assert all(isinstance(r, ResponseLost) for r in replies[1:])


async def test_a_command_twice_in_one_batch_is_applied_once(
    inventory: ServiceProcess, client: aiohttp.ClientSession
) -> None:
    twice = _reserve("d-1")
    before = inventory.stats()
    status, body = await _post(client, inventory.url, {"commands": [twice, twice]})
    assert status == 200
    first, second = body["replies"]
    assert first["code"] == 200 and second["code"] in (200, 425)
    if second["code"] == 200:
        assert second == first
    assert inventory.stats()["applied"] - before["applied"] == 1


async def test_the_openapi_documents_the_batch_endpoint(
    inventory: ServiceProcess, client: aiohttp.ClientSession
) -> None:
    async with client.get(f"{inventory.url}/openapi.json") as response:
        schema = await response.json()
    batch = schema["paths"]["/commands"]["post"]
    assert {"200", "400", "413"} <= set(batch["responses"])
    commands = batch["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert commands["commands"]["maxItems"] == MAX_BATCH_COMMANDS
    assert set(commands["commands"]["items"]["properties"]["action"]["enum"]) >= {"reserve"}
