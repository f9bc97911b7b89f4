"""The HTTP edges of a real `ordersaga serve` process: slow clients are cut off in time, the
connection cap makes room by dropping them, and /health stays fast meanwhile."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable
from pathlib import Path

from tests.integration.http.conftest import ServiceProcess, get_json, sqlite_url

HEADER_TIMEOUT = 2.0
CAP = 8


def _connect(service: ServiceProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", service.port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _closed(sock: socket.socket) -> bool:
    """Whether the server closed ``sock`` (it reads EOF or a reset)."""
    sock.settimeout(0.05)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:
        return True


def _start(start: Callable[..., ServiceProcess], tmp_path: Path) -> ServiceProcess:
    extra = ("--header-timeout", str(HEADER_TIMEOUT), "--max-connections", str(CAP))
    return start("inventory", sqlite_url(tmp_path, "inventory"), extra=extra)


def test_a_client_sending_one_header_byte_a_second_is_cut_off_in_time(
    tmp_path: Path, start_service: Callable[..., ServiceProcess]
) -> None:
    service = _start(start_service, tmp_path)
    sock = _connect(service)
    started = time.monotonic()
    request = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
    try:
        for byte in request:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            if _closed(sock):
                break
            time.sleep(1.0)
        elapsed = time.monotonic() - started
        assert _closed(sock) or elapsed < HEADER_TIMEOUT + 1.5
        assert elapsed < HEADER_TIMEOUT + 1.5, f"still open after {elapsed:.1f} s"
        assert elapsed >= HEADER_TIMEOUT - 0.1  # not cut before the documented timeout
    finally:
        sock.close()
    assert get_json(f"{service.url}/health")[0] == 200


def test_slow_clients_beyond_the_cap_make_room_and_health_stays_fast(
    tmp_path: Path, start_service: Callable[..., ServiceProcess]
) -> None:
    service = _start(start_service, tmp_path)
    slow = [_connect(service) for _ in range(CAP + 4)]
    try:
        for sock in slow:
            sock.sendall(b"GET /health HTTP/1.1\r\n")  # headers never finished
        time.sleep(0.2)
        started = time.monotonic()
        assert get_json(f"{service.url}/health", timeout=2)[0] == 200
        assert time.monotonic() - started < 0.5
        # The oldest slow clients were dropped to keep at most CAP connections open.
        dropped = [sock for sock in slow if _closed(sock)]
        assert len(dropped) >= len(slow) - CAP + 1
    finally:
        for sock in slow:
            sock.close()


def test_connections_beyond_the_cap_are_refused_when_all_are_busy(
    tmp_path: Path, start_service: Callable[..., ServiceProcess]
) -> None:
    service = _start(start_service, tmp_path)
    busy = [_connect(service) for _ in range(CAP)]
    try:
        for sock in busy:  # headers complete, the body never comes: requests in progress
            sock.sendall(
                b"POST /commands/reserve HTTP/1.1\r\nHost: x\r\nIdempotency-Key: s:reserve:action"
                b"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
            )
        time.sleep(0.3)
        extra = _connect(service)
        extra.settimeout(2)
        try:
            extra.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert extra.recv(100) == b""  # refused: closed at once
        except OSError:
            pass  # reset: refused too
        finally:
            extra.close()
        assert not any(_closed(sock) for sock in busy)  # requests in progress are never cut
    finally:
        for sock in busy:
            sock.close()
    time.sleep(0.3)
    assert get_json(f"{service.url}/health")[0] == 200  # room again once they are gone


def _response(sock: socket.socket) -> int:
    """The status of the next response on ``sock`` (read to its end, a Content-Length body)."""
    sock.settimeout(5)
    reader = sock.makefile("rb", buffering=0)  # unbuffered: a pipelined reply stays unread
    status = int(reader.readline().split()[1])
    length = 0
    while (line := reader.readline()) != b"\r\n":
        assert line, "closed before a whole response"
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    body = b""
    while len(body) < length:
        part = reader.read(length - len(body))
        assert part, "closed before a whole response"
        body += part
    return status


def _health(pad: int = 0) -> bytes:
    return b"GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * pad + b"\r\n\r\n"


def _until_closed(sock: socket.socket) -> bytes:
    """What the server sends on ``sock`` before it closes it."""
    sock.settimeout(5)
    reply = b""
    try:
        while part := sock.recv(65536):
            reply += part
    except ConnectionResetError:
        pass  # closed with bytes of ours unread: the kernel resets
    return reply


def test_headers_above_the_limit_are_answered_400_and_the_connection_closed(
    tmp_path: Path, start_service: Callable[..., ServiceProcess]
) -> None:
    service = _start(start_service, tmp_path)
    sock = _connect(service)
    try:  # headers that never end, sent in pieces until they pass 64 KiB
        head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 66_000
        for at in range(0, len(head), 4096):
            sock.sendall(head[at : at + 4096])
        reply = _until_closed(sock)
        assert reply.startswith(b"HTTP/1.1 400 "), reply[:100]
        assert reply.endswith(b"\r\n\r\nInvalid HTTP request received.")
    finally:
        sock.close()
    for pad in (70_000, 200_000):  # whole requests at once: refused too
        sock = _connect(service)
        try:
            with contextlib.suppress(OSError):  # closed by the server before the rest was sent
                sock.sendall(_health(pad))
            reply = _until_closed(sock)
            assert reply == b"" or reply.startswith(b"HTTP/1.1 400 "), reply[:100]
        finally:
            sock.close()
    sock = _connect(service)
    try:  # headers below the limit, whole or in pieces, are served
        sock.sendall(_health(60_000))
        assert _response(sock) == 200
        request = _health(60_000)
        for at in range(0, len(request), 4096):
            sock.sendall(request[at : at + 4096])
        assert _response(sock) == 200
    finally:
        sock.close()


def test_keep_alive_connections_serve_again_then_get_the_header_deadline_again(
    tmp_path: Path, start_service: Callable[..., ServiceProcess]
) -> None:
    service = _start(start_service, tmp_path)
    sock = _connect(service)
    try:
        sock.sendall(_health() + _health())  # pipelined: both answered, in order
        assert _response(sock) == 200
        assert _response(sock) == 200
        sock.sendall(_health())
        assert _response(sock) == 200
        sock.sendall(b"GET /health HTTP/1.1\r\n")  # the next request's headers never end
        started = time.monotonic()
        while not _closed(sock):
            assert time.monotonic() - started < HEADER_TIMEOUT + 1.5, "not cut off in time"
        assert time.monotonic() - started >= HEADER_TIMEOUT - 0.1
    finally:
        sock.close()


def test_an_idle_keep_alive_connection_is_closed_after_the_keep_alive_time(
    tmp_path: Path, start_service: Callable[..., ServiceProcess]
) -> None:
    service = start_service("inventory", sqlite_url(tmp_path, "inventory"))  # 10 s, 5 s
    sock = _connect(service)
    try:
        sock.sendall(_health())
        assert _response(sock) == 200
        started = time.monotonic()
        while not _closed(sock):
            assert time.monotonic() - started < 5 + 1.5, "idle connection still open"
        assert time.monotonic() - started >= 5 - 0.1
    finally:
        sock.close()
