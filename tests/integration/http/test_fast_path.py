"""The command routes' fast path answers every request exactly as the app's whole stack does.

Two inventory services on fresh databases get the same requests in the same order: one app as
served (the command routes on :class:`CommandFastPath`), one through the whole middleware stack
the fast path stands in front of. Every status, header and body byte must agree, tokens and
refusals, malformed bodies, size limits and paths the routes do not match included.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ordersaga.participant.http import CommandFastPath, create_app
from ordersaga.protocol.wire import encode_key
from ordersaga.services.inventory import InventoryService
from tests.integration.services.helpers import open_inventory, release, reserve

TOKEN = "fast-path-token-0123456789abcdef"
LIMIT = 4096


def _command(command: Any, token: str | None = TOKEN) -> tuple[str, str, bytes, dict[str, str]]:
    headers = {"Idempotency-Key": encode_key(command.key)}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    body = json.dumps(dict(command.payload)).encode()
    return "POST", f"/commands/{command.action}", body, headers


def _batch(items: list[Any], token: str | None = TOKEN) -> tuple[str, str, bytes, dict[str, str]]:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return "POST", "/commands", json.dumps({"commands": items}).encode(), headers


def _item(command: Any) -> dict[str, Any]:
    return {"action": command.action, "key": command.key, "payload": dict(command.payload)}


AUTH = {"Authorization": f"Bearer {TOKEN}"}
REQUESTS: list[tuple[str, str, bytes, dict[str, str]]] = [
    _command(reserve("s1", ("A", 2))),
    _command(reserve("s1", ("A", 2))),  # a replay
    _command(reserve("s1", ("A", 3))),  # the key with another request: conflict
    _command(reserve("s2", ("A", 1)), token=None),  # no token: 401, nothing applied
    _command(reserve("s2", ("A", 1)), token="wrong-token-0123456789abcdefgh"),
    _command(release("s1")),
    _batch([_item(reserve("s3", ("A", 1))), _item(reserve("s4", ("B", 1))), {"action": 1}]),
    _batch([_item(reserve("s5", ("A", 1)))], token=None),
    _batch([]),
    ("POST", "/commands", b"{not json", AUTH),
    ("POST", "/commands", b"[" * 10 + b"]" * 10, AUTH),
    ("POST", "/commands", b" " * (LIMIT + 1), AUTH),  # too large: 413
    ("POST", "/commands/reserve", b"{}", AUTH),  # no Idempotency-Key
    ("POST", "/commands/reserve", b'{"order_id": NaN}', {**AUTH, "Idempotency-Key": "s9:x:y"}),
    ("POST", "/commands/nothing-like-it", b"{}", {**AUTH, "Idempotency-Key": "s9:x:action"}),
    # Paths and methods the routes do not match: the whole stack answers both apps.
    ("POST", "/commands/", b"{}", AUTH),
    ("POST", "/commands/reserve/more", b"{}", AUTH),
    ("GET", "/commands/reserve", b"", AUTH),
    ("GET", "/commands", b"", AUTH),
    ("GET", "/health", b"", {}),
]


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[tuple[InventoryService, InventoryService]]:
    fast = await open_inventory(f"sqlite:///{tmp_path / 'fast.db'}")
    whole = await open_inventory(f"sqlite:///{tmp_path / 'whole.db'}")
    yield fast, whole
    await fast.close()
    await whole.close()


async def _answers(app: Any) -> list[tuple[int, list[tuple[str, str]], bytes]]:
    answers = []
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        for method, path, body, headers in REQUESTS:
            response = await http.request(method, path, content=body or None, headers=headers)
            answers.append(
                (response.status_code, sorted(response.headers.items()), response.content)
            )
    return answers


async def test_the_fast_path_answers_as_the_whole_stack(
    services: tuple[InventoryService, InventoryService],
) -> None:
    fast, whole = services
    served = create_app(fast, name="inventory", max_body_bytes=LIMIT, token=TOKEN)
    reference = create_app(whole, name="inventory", max_body_bytes=LIMIT, token=TOKEN)
    built = reference.build_middleware_stack()
    assert isinstance(built, CommandFastPath)
    reference.middleware_stack = built.stack  # every request through the whole stack

    fast_answers = await _answers(served)
    assert fast_answers == await _answers(reference)
    codes = [status for status, _, _ in fast_answers]
    assert codes[:6] == [200, 200, 409, 401, 401, 200]
    assert codes[7:9] == [401, 400] and codes[11] == 413
    assert codes[-5:] == [307, 404, 405, 405, 200]  # a slash more: redirected


async def test_command_routes_take_the_fast_path_and_the_rest_the_stack(
    services: tuple[InventoryService, InventoryService],
) -> None:
    app = create_app(services[0], name="inventory", max_body_bytes=LIMIT)
    built = app.build_middleware_stack()
    assert isinstance(built, CommandFastPath)
    seen: list[str] = []
    stack, commands = built.stack, built.commands

    async def via_stack(scope: Any, receive: Any, send: Any) -> None:
        seen.append(f"stack {scope['method']} {scope['path']}")
        await stack(scope, receive, send)

    async def via_commands(scope: Any, receive: Any, send: Any) -> None:
        seen.append(f"fast {scope['method']} {scope['path']}")
        await commands(scope, receive, send)

    app.middleware_stack = CommandFastPath(via_stack, via_commands)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        for method, path in [
            ("POST", "/commands"),
            ("POST", "/commands/reserve"),
            ("POST", "/commands/x%20y"),
            ("POST", "/commands/"),
            ("POST", "/commands/a/b"),
            ("POST", "/commandsX"),
            ("GET", "/commands/reserve"),
            ("GET", "/health"),
        ]:
            await http.request(method, path, content=b"{}" if method == "POST" else None)
    assert seen == [
        "fast POST /commands",
        "fast POST /commands/reserve",
        "fast POST /commands/x y",
        "stack POST /commands/",
        "stack POST /commands/a/b",
        "stack POST /commandsX",
        "stack GET /commands/reserve",
        "stack GET /health",
    ]
