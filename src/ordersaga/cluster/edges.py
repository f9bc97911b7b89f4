"""The HTTP edges of every ordersaga server: timeouts and a connection cap, with defaults.

uvicorn times out an idle keep-alive connection, but not a client that sends its request
headers slowly (one byte a second keeps a connection open for ever), and its own concurrency
limit answers 503 to everyone, health checks included, once slow clients fill it. So every
server (`serve SERVICE`, `serve api`) runs uvicorn's httptools protocol (llhttp, in C) with a
guard:

``header_timeout`` (default 10 s)
    a request's headers must be complete within this time of the connection being made, or of
    the previous response on a keep-alive connection; otherwise the connection is closed.
``keep_alive`` (default 5 s)
    an idle keep-alive connection is closed after this time (uvicorn's own timer).
``max_connections`` (default 1000)
    when a connection arrives with this many open, the oldest connection still waiting for its
    request headers is dropped to make room (a slow or idle client); if every connection is
    busy with a request, the new one is refused (closed at once). Requests in progress are
    never cut, and a health check is served promptly even while slow clients pile up.
``max_header_bytes`` (default 64 KiB)
    a request whose request line and headers are larger is answered 400 and the connection
    closed, as any malformed request is (llhttp has no such limit: the guard counts the bytes
    that arrive while the headers are awaited).

Bodies are read by the apps under their own deadline (``BODY_TIMEOUT_SECONDS`` in
:mod:`ordersaga.participant.body`): a body that is not complete in time is answered 408.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ordersaga.errors import ConfigError

__all__ = ["EdgeLimits", "guarded_protocol"]

log = logging.getLogger(__name__)

#: What uvicorn answers (400, then the connection is closed) to any request it cannot parse.
_INVALID = "Invalid HTTP request received."


@dataclass(frozen=True, slots=True)
class EdgeLimits:
    """The limits of one server (see the module docstring for what each means)."""

    header_timeout: float = 10.0
    keep_alive: int = 5
    max_connections: int = 1000
    max_header_bytes: int = 64 * 1024

    def __post_init__(self) -> None:
        if not self.header_timeout > 0 or self.keep_alive < 1:
            raise ConfigError("the header timeout and keep-alive must be positive")
        if self.max_connections < 1 or self.max_header_bytes < 1024:
            raise ConfigError("max connections must be >= 1 and max header bytes >= 1024")


class _HeadersTooLarge(Exception):
    """Raised in the parser's headers-complete callback: the parser fails the request with it,
    and uvicorn answers 400 as to any request it cannot parse."""


def guarded_protocol(limits: EdgeLimits) -> type[asyncio.Protocol]:
    """An httptools protocol class enforcing ``limits`` (one per server: its waiting list is
    shared).

    A connection awaits request headers from when it is made, and again after each response
    unless a pipelined request's headers are already in; the parser's headers-complete callback
    ends the wait. While it waits, every byte received counts towards ``max_header_bytes``.
    """
    # Connections waiting for request headers, oldest first (insertion order).
    waiting: collections.OrderedDict[GuardedHttpTools, None] = collections.OrderedDict()
    max_header_bytes = limits.max_header_bytes

    class GuardedHttpTools(HttpToolsProtocol):
        _deadline: asyncio.TimerHandle | None = None
        _header_bytes = 0  # received since the wait began (an upper bound of the headers')

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            if len(self.connections) >= limits.max_connections:
                if waiting:
                    oldest, _ = waiting.popitem(last=False)
                    oldest.drop("dropped for a new connection (at the connection cap)")
                else:
                    log.warning("refused a connection: %d open", len(self.connections))
                    transport.close()
                    return
            super().connection_made(transport)  # type: ignore[arg-type]
            self._await_headers()

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_waiting()
            if self.transport is None:
                return  # refused in connection_made: never became a connection
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._deadline is None:  # a request in progress (or a pipelined one's headers)
                super().data_received(data)
                return
            self._header_bytes += len(data)
            super().data_received(data)
            # Still waiting: the headers are incomplete, and every byte so far is theirs.
            if self._deadline is not None and self._header_bytes > max_header_bytes:
                self._stop_waiting()
                if not self.transport.is_closing():
                    self.logger.warning(_INVALID)
                    self.send_400_response(_INVALID)

        def on_headers_complete(self) -> None:
            if self._deadline is not None:
                if self._header_bytes > max_header_bytes and self._head_bytes() > max_header_bytes:
                    raise _HeadersTooLarge
                self._stop_waiting()  # the headers are in: the app's body deadline takes over
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            # Unless a pipelined request's headers are in already (a newer cycle, not complete).
            if not self.transport.is_closing() and self.cycle.response_complete:
                self._await_headers()

        def _head_bytes(self) -> int:
            """The size of the request line and headers just parsed (whitespace aside)."""
            head = len(self.parser.get_method()) + len(self.url) + 14
            return head + sum(len(name) + len(value) + 4 for name, value in self.headers)

        def _await_headers(self) -> None:
            self._stop_waiting()
            waiting[self] = None
            self._header_bytes = 0
            self._deadline = self.loop.call_later(
                limits.header_timeout, self.drop, "request headers not received in time"
            )

        def _stop_waiting(self) -> None:
            waiting.pop(self, None)
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def drop(self, why: str) -> None:
            self._stop_waiting()
            if not self.transport.is_closing():
                log.info("closed a connection from %s: %s", _peer(self.client), why)
                self.transport.close()

    GuardedHttpTools.__name__ = GuardedHttpTools.__qualname__ = "GuardedHttpTools"
    return GuardedHttpTools


def _peer(client: Any) -> str:
    return f"{client[0]}:{client[1]}" if client else "?"
