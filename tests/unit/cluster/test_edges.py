"""The edge guard's protocol in process, on a fake transport: the header-size limit, exactly at
the bytes it is about (the integration tests in tests/integration/http/test_edges.py drive a
real server over sockets)."""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.config import Config
from uvicorn.server import ServerState

from ordersaga.cluster.edges import EdgeLimits, guarded_protocol

LIMIT = 4096


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8000)}.get(
            name, default
        )

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _app(scope: Any, receive: Any, send: Any) -> None:
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    )
    await send({"type": "http.response.body", "body": b"ok"})


def _connection() -> tuple[asyncio.Protocol, FakeTransport]:
    config = Config(_app, lifespan="off", access_log=False)
    limits = EdgeLimits(max_header_bytes=LIMIT)
    protocol: Any = guarded_protocol(limits)(
        config=config, server_state=ServerState(), app_state={}, _loop=asyncio.get_running_loop()
    )
    transport = FakeTransport()
    protocol.connection_made(transport)
    return protocol, transport


def _request(head_bytes: int) -> bytes:
    """A GET whose request line and headers are exactly ``head_bytes`` long."""
    start = b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: "
    return start + b"a" * (head_bytes - len(start) - 4) + b"\r\n\r\n"


async def _answer(head_bytes: int, chunk: int) -> bytes:
    protocol, transport = _connection()
    request = _request(head_bytes)
    for at in range(0, len(request), chunk):
        if transport.closed:
            break
        protocol.data_received(request[at : at + chunk])
    for _ in range(5):
        await asyncio.sleep(0)  # the app's task answers
    protocol.connection_lost(None)
    return bytes(transport.written)


async def test_headers_up_to_the_limit_are_served_whole_or_in_pieces() -> None:
    for chunk in (LIMIT, 1000, 1):
        reply = await _answer(LIMIT, chunk)
        assert reply.startswith(b"HTTP/1.1 200 OK\r\n") and reply.endswith(b"ok"), chunk


async def test_headers_one_byte_over_the_limit_get_400_and_the_connection_closes() -> None:
    for chunk in (LIMIT + 1, LIMIT + 100, 1000, 1):
        reply = await _answer(LIMIT + 1, chunk)
        assert reply.startswith(b"HTTP/1.1 400 Bad Request\r\n"), chunk
        assert b"connection: close\r\n" in reply
        assert reply.endswith(b"\r\n\r\nInvalid HTTP request received."), chunk


async def test_the_count_starts_again_with_each_request_on_a_keep_alive_connection() -> None:
    protocol, transport = _connection()
    for _ in range(3):
        protocol.data_received(_request(LIMIT))
        for _ in range(5):
            await asyncio.sleep(0)
    assert bytes(transport.written).count(b"HTTP/1.1 200 OK\r\n") == 3
    assert not transport.closed
    protocol.connection_lost(None)


async def test_a_body_arriving_with_the_headers_does_not_count_towards_them() -> None:
    protocol, transport = _connection()
    start = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nX-Pad: "
    head = start + b"a" * (LIMIT - len(start) - 4) + b"\r\n\r\n"
    protocol.data_received(head + b"b" * 100)  # LIMIT + 100 bytes in one piece
    for _ in range(5):
        await asyncio.sleep(0)
    assert bytes(transport.written).startswith(b"HTTP/1.1 200 OK\r\n")
    protocol.connection_lost(None)
