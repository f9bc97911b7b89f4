"""The HTTP transport against real `ordersaga serve` processes: the same replies as in process.

The same script of commands runs against three services in this process (in-process transport)
and against three served ones (HTTP transport), each side on its own new databases seeded from
the demo world: every reply and every probe must be equal. Then the error mapping: no server,
a proxy's error page, a lying envelope, a slow or vanishing server.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from ordersaga.errors import ConfigError, RequestLost, ResponseLost
from ordersaga.orders.demo import demo_world
from ordersaga.protocol.messages import (
    MAX_MESSAGE_AGE,
    Command,
    KeyState,
    Phase,
    Probe,
    Reply,
    ReplyStatus,
    make_key,
)
from ordersaga.services.factory import ServiceConfigs, data_dir_urls, open_services
from ordersaga.transport.faults import FaultInjector, FaultSettings
from ordersaga.transport.http import HttpSettings, HttpTransport, check_base_url
from ordersaga.transport.inprocess import InProcessTransport
from tests.integration.http.conftest import SERVICES, Handler, ServiceProcess, free_port, sqlite_url


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The three services, each its own process on its own SQLite file: name -> base URL."""
    directory = tmp_path_factory.mktemp("served")
    processes = [ServiceProcess(name, sqlite_url(directory, name), directory) for name in SERVICES]
    try:
        for process in processes:
            process.start(wait=False)
        for process in processes:
            process.wait_healthy()
        yield {p.service: p.url for p in processes}
    finally:
        for process in processes:
            process.kill()


@pytest.fixture
async def pair(
    served: dict[str, str], tmp_path: Path
) -> AsyncIterator[tuple[InProcessTransport, HttpTransport]]:
    world = demo_world()
    configs = ServiceConfigs(world.inventory, world.shipping, world.payment)
    services = await open_services(data_dir_urls(tmp_path), configs, durable=False)
    http = HttpTransport(served)
    try:
        yield InProcessTransport(services.by_name()), http
    finally:
        await http.close()
        await services.close()


def _key(saga: str, step: str, phase: Phase) -> str:
    return make_key(saga, step, phase)


def _script(run: str) -> list[Command]:
    """Commands covering ok, replay, conflict, refusals, invalid, tombstones, confirmations."""
    address = {"street": "1 Main St", "city": "Springfield", "country": "US"}
    ok_order = f"{run}-ok"
    lines = [{"item_id": "A", "quantity": 2}, {"item_id": "B", "quantity": 1}]
    reserve = Command(
        "inventory",
        "reserve",
        _key(ok_order, "reserve", Phase.ACTION),
        {"order_id": ok_order, "items": lines},
    )
    pay = {
        "order_id": ok_order,
        "user_id": 456,
        "amount_cents": 3149,
        "method": "CreditCard",
        "card_number": "4111111111111111",
        "expiry": "12/30",
    }
    late = f"{run}-late"
    unicode_saga = f"{run}-Zürich:ü/ß%?#"
    return [
        reserve,
        reserve,  # replay
        Command("inventory", "reserve", reserve.key, {"order_id": ok_order, "items": lines[:1]}),
        Command(
            "shipping",
            "prepare",
            _key(ok_order, "ship", Phase.ACTION),
            {"order_id": ok_order, "address": address, "weight_kg": "2.2"},
        ),
        Command("payment", "authorize", _key(ok_order, "pay", Phase.ACTION), pay),
        Command("inventory", "commit", _key(ok_order, "reserve", Phase.CONFIRM), {}),
        Command("shipping", "schedule", _key(ok_order, "ship", Phase.CONFIRM), {}),
        Command("payment", "capture", _key(ok_order, "pay", Phase.CONFIRM), {"order_id": ok_order}),
        Command(
            "inventory",
            "release",
            _key(ok_order, "reserve", Phase.COMPENSATE),
            {"order_id": ok_order},
        ),  # refused: committed
        Command(
            "inventory",
            "reserve",
            _key(f"{run}-c", "reserve", Phase.ACTION),
            {"order_id": f"{run}-c", "items": [{"item_id": "C", "quantity": 1}]},
        ),  # refused: no stock
        Command(
            "shipping",
            "prepare",
            _key(f"{run}-xx", "ship", Phase.ACTION),
            {"order_id": "x", "address": {**address, "country": "XX"}, "weight_kg": "1"},
        ),  # refused: country
        Command(
            "payment",
            "authorize",
            _key(f"{run}-luhn", "pay", Phase.ACTION),
            {**pay, "order_id": "l", "card_number": "4111111111111112"},
        ),  # refused: Luhn (a declined payment)
        Command("payment", "void", _key(f"{run}-luhn", "pay", Phase.COMPENSATE), {"order_id": "l"}),
        Command(
            "inventory",
            "release",
            _key(late, "reserve", Phase.COMPENSATE),
            {"order_id": late},
        ),  # a tombstone ...
        Command(
            "inventory",
            "reserve",
            _key(late, "reserve", Phase.ACTION),
            {"order_id": late, "items": lines},
        ),  # ... refuses the late action
        Command(
            "inventory",
            "reserve",
            _key(f"{run}-bad", "reserve", Phase.ACTION),
            {"order_id": "b", "items": [{"item_id": "A", "quantity": 0}]},
        ),  # invalid payload
        Command("inventory", "reserve", "no-phase-key", {"order_id": "b"}),  # invalid key
        Command(
            "inventory", "reserve", _key(run, "r", Phase.CONFIRM), {"order_id": "b"}
        ),  # wrong phase
        Command("inventory", "explode", _key(run, "r", Phase.ACTION), {}),  # unknown action
        Command("inventory", "reserve", _key(run, "set", Phase.ACTION), {"x": {1, 2}}),
        Command(
            "inventory",
            "reserve",
            _key(unicode_saga, "reserve", Phase.ACTION),
            {"order_id": "ü", "items": [{"item_id": "A", "quantity": 1}]},
        ),
        Command("inventory", "reserve", _key(f"{run}-big", "r", Phase.ACTION), {"p": "x" * 70_000}),
    ]


async def test_replies_and_probes_equal_the_in_process_ones(
    pair: tuple[InProcessTransport, HttpTransport],
) -> None:
    local, http = pair
    statuses = set()
    for command in _script("eq"):
        expected = await local.send(command)
        got = await http.send(command)
        assert got == expected, command
        statuses.add(got.status)
        for service in SERVICES:
            assert await http.probe(service, command.key) == await local.probe(
                service, command.key
            ), (service, command.key)
    assert statuses == {ReplyStatus.OK, ReplyStatus.REFUSED, ReplyStatus.INVALID} | {
        ReplyStatus.CONFLICT
    }
    states = {(await http.probe(c.service, c.key)).state for c in _script("eq")}
    assert states == set(KeyState)
    assert await http.probe("inventory", "") == await local.probe("inventory", "")


async def test_the_first_send_time_travels_and_an_expired_command_is_refused_alike(
    pair: tuple[InProcessTransport, HttpTransport],
) -> None:
    """``sent_at`` crosses HTTP as the Sent-At header: 410 ``expired`` past the age limit."""
    local, http = pair
    reserve = _script("age")[0]
    fresh = dataclasses.replace(reserve, sent_at=time.time() - 5)
    assert (await http.send(fresh)) == (await local.send(fresh))
    old = dataclasses.replace(reserve, sent_at=time.time() - MAX_MESSAGE_AGE - 30)
    for transport in (local, http):
        reply = await transport.send(old)
        assert reply.status is ReplyStatus.EXPIRED and reply.reason is not None
        assert reply.reason.startswith("expired: first sent")
    assert (await http.send(fresh)).ok  # a younger repeat still finds its record


async def test_a_payload_that_is_not_json_never_leaves_the_process() -> None:
    http = HttpTransport({"payment": f"http://127.0.0.1:{free_port()}"})  # nobody listens
    try:
        for payload in ({"amount": float("nan")}, {"x": {1, 2}}, {"x": float("inf")}):
            command = Command("payment", "authorize", "s:pay:action", payload)
            assert await http.send(command) == Reply.invalid("payload is not JSON data")
    finally:
        await http.close()


async def test_the_fault_injector_wraps_the_http_transport_unchanged(
    served: dict[str, str],
) -> None:
    http = HttpTransport(served)
    injector = FaultInjector(http, FaultSettings(rate=0.5, seed=3))
    try:
        outcomes: list[Reply | Exception] = []
        for n in range(40):
            command = Command(
                "inventory",
                "reserve",
                _key(f"fi-{n}", "reserve", Phase.ACTION),
                {"order_id": f"fi-{n}", "items": [{"item_id": "A", "quantity": 1}]},
            )
            try:
                outcomes.append(await injector.send(command))
            except (RequestLost, ResponseLost) as exc:
                outcomes.append(exc)
        await injector.drain()
    finally:
        await injector.close()
    assert all(injector.counts[fault] > 0 for fault in injector.counts), injector.counts
    assert any(isinstance(o, Reply) and o.ok for o in outcomes)
    assert any(isinstance(o, ResponseLost) for o in outcomes)


async def test_no_server_is_request_lost() -> None:
    port = free_port()  # nobody listens there
    http = HttpTransport({"inventory": f"http://127.0.0.1:{port}"})
    try:
        with pytest.raises(RequestLost):
            await http.send(Command("inventory", "reserve", "s:r:action", {}))
        with pytest.raises(RequestLost):
            await http.probe("inventory", "s:r:action")
        with pytest.raises(ConfigError):
            await http.send(Command("shipping", "prepare", "s:r:action", {}))
    finally:
        await http.close()


def _answer(status: int, body: Any, content_type: str = "application/json") -> Handler:
    async def handler(_request: web.Request) -> web.StreamResponse:
        text = body if isinstance(body, str) else web.json_response(body).text
        return web.Response(status=status, text=text, content_type=content_type)

    return handler


async def _slow(_request: web.Request) -> web.StreamResponse:
    await asyncio.sleep(5)
    return web.Response(status=200)


async def _hang_up(request: web.Request) -> web.StreamResponse:
    assert request.transport is not None
    request.transport.close()
    await asyncio.sleep(0.1)
    return web.Response(status=200)


@pytest.mark.parametrize(
    "handler",
    [
        _answer(502, "<html>Bad Gateway</html>", "text/html"),
        _answer(503, {"status": "unavailable", "reason": "database"}),
        _answer(500, {"status": "ok", "body": {}, "reason": None}),
        _answer(422, {"status": "ok", "body": {}, "reason": None}),  # code and body disagree
        _answer(200, {"status": "refused", "body": {}, "reason": "x"}),
        _answer(404, {"detail": "Not Found"}),
        _answer(418, {"status": "ok", "body": {}, "reason": None}),
        _answer(200, "not json", "text/plain"),
        _answer(200, {"status": "ok", "body": [], "reason": None}),
        _answer(200, {"status": "maybe", "body": {}, "reason": None}),
        _slow,
        _hang_up,
    ],
    ids=lambda h: getattr(h, "__name__", "?"),
)
async def test_anything_but_a_matching_envelope_is_response_lost(
    stub: Callable[[Handler], Awaitable[str]], handler: Handler
) -> None:
    url = await stub(handler)
    http = HttpTransport({"inventory": url}, HttpSettings(read_timeout=0.3))
    try:
        with pytest.raises(ResponseLost):
            await http.send(Command("inventory", "reserve", "s:r:action", {"order_id": "o"}))
    finally:
        await http.close()


async def test_a_proxy_page_is_not_a_probe_answer(
    stub: Callable[[Handler], Awaitable[str]],
) -> None:
    url = await stub(_answer(200, {"state": "gone", "reply": None}))
    http = HttpTransport({"payment": url})
    try:
        with pytest.raises(ResponseLost):
            await http.probe("payment", "s:pay:action")
    finally:
        await http.close()
    url = await stub(_answer(200, {"state": "refused", "reply": None}))
    http = HttpTransport({"payment": url})
    try:
        assert await http.probe("payment", "s:pay:action") == Probe(KeyState.REFUSED)
    finally:
        await http.close()


@pytest.mark.parametrize(
    "url", ["localhost:8001", "ftp://h/", "http://", "http://h:99999", "http://h/?q=1"]
)
def test_bad_base_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError):
        check_base_url("inventory", url)


def test_settings_are_validated() -> None:
    with pytest.raises(ConfigError):
        HttpSettings(connect_timeout=0)
    with pytest.raises(ConfigError):
        HttpSettings(max_connections=0)
