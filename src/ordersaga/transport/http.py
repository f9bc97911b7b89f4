"""The HTTP transport: each service behind its base URL, one pooled async client per service.

A call ends in one of three ways, exactly as with the in-process transport:

* a definite answer: the status code and the envelope's ``status`` agree (see the table in
  :mod:`ordersaga.protocol.wire`), and the :class:`~ordersaga.protocol.messages.Reply` is rebuilt
from
  the envelope, equal to the one the participant returned;
* :class:`~ordersaga.errors.ServiceUnreachable` (a :class:`~ordersaga.errors.RequestLost`): the
  request certainly did not reach the service (no connection could be opened — refused, DNS
  failure, connect timeout — or no pooled connection came free in time): an outage, retried
  without spending the unknown-outcome budget;
* :class:`~ordersaga.errors.AccessRefused` when the service answered ``401``: it refused our
  token before doing anything. A configuration fault, not an outage: the engine does not retry
  it, and ``run`` / ``worker`` stop (exit 2) with the saga left unfinished, to resume once the
  token is right;
* :class:`~ordersaga.errors.ResponseLost`: anything else, where the service may have applied the
  request: a read timeout, a reset, a 5xx (503: its database is unavailable), an unlisted status
  code, or an envelope that does not match its code (a proxy's error page is never taken for a
  business answer).

Commands to one service ready at the same time travel together: the transport batches them
(:mod:`ordersaga.transport.batcher`) into one ``POST /commands``
(:mod:`ordersaga.protocol.batchwire`) whose answer carries each command's own code and reply, read
back as above; a lone command goes as ``POST /commands/{action}``. A batch request that fails in
any of the ways above fails every command in it the same way (each caller gets its own error),
and a 413 (nothing applied) or a service without the endpoint (404, 405) gets one request per
command instead.

The engine retries both errors under the same idempotency key, and the fault injector wraps this
transport like any other. A command carries the current span's W3C ``traceparent`` header when
tracing is on (see :mod:`ordersaga.telemetry.tracing`).

The client is aiohttp's: on a saga workload it spends about a tenth of the CPU per request that
httpx's pool does (httpx scans every pooled connection on each request; encode/httpx#3215), and
the orchestrator's own CPU is what bounds throughput over HTTP. Clients ignore proxy environment
variables (``trust_env=False``): the services' URLs are meant literally.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
from yarl import URL

from ordersaga.errors import (
    AccessRefused,
    ConfigError,
    ResponseLost,
    ServiceUnreachable,
    TransportError,
)
from ordersaga.protocol.batchwire import (
    BATCH_PATH,
    MAX_BATCH_COMMANDS,
    batch_body,
    encode_item,
    read_replies,
)
from ordersaga.protocol.messages import Command, KeyState, Probe, Reply, ReplyStatus
from ordersaga.protocol.wire import (
    IDEMPOTENCY_KEY,
    SENT_AT,
    STATUS_OF_CODE,
    TOO_LARGE,
    encode_key,
    encode_sent_at,
)
from ordersaga.telemetry.tracing import TRACEPARENT, inject_current
from ordersaga.transport.base import Transport
from ordersaga.transport.batcher import Batcher
from ordersaga.transport.codec import encode_payload, loads

__all__ = ["HttpSettings", "HttpTransport", "check_base_url"]


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """Timeouts (seconds) and pool limits of each service's client.

    ``connect_timeout`` bounds opening a connection, ``pool_timeout`` the wait for a free pooled
    connection (either way nothing was sent: :class:`RequestLost`). ``read_timeout`` bounds each
    wait for the response's bytes (then :class:`ResponseLost`). ``max_connections`` caps the
    connections to one service; idle ones are kept for ``keepalive_expiry`` seconds.
    """

    connect_timeout: float = 2.0
    read_timeout: float = 10.0
    pool_timeout: float = 30.0
    max_connections: int = 100
    keepalive_expiry: float = 15.0
    #: Commands one request may carry (``POST /commands``; 1: every command its own request).
    max_batch: int = 128
    #: Batch requests in flight per service; commands queue behind them (see transport.batcher).
    batch_in_flight: int = 2
    #: Bytes of encoded commands one batch may carry (a larger command goes alone).
    max_batch_bytes: int = 128 * 1024
    #: The service token sent as ``Authorization: Bearer`` (never shown in a repr).
    token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        for name in ("connect_timeout", "read_timeout", "pool_timeout"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"http settings: {name} must be positive")
        if self.max_connections < 1:
            raise ConfigError("http settings: max_connections must be at least 1")
        if self.keepalive_expiry < 0:
            raise ConfigError("http settings: keepalive_expiry must be >= 0")
        if not 1 <= self.max_batch <= MAX_BATCH_COMMANDS:
            raise ConfigError(f"http settings: max_batch must be within [1, {MAX_BATCH_COMMANDS}]")
        if self.batch_in_flight < 1 or self.max_batch_bytes < 1:
            raise ConfigError("http settings: batch_in_flight and max_batch_bytes must be >= 1")

    def timeout(self) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(
            total=None,
            connect=self.pool_timeout + self.connect_timeout,  # pool wait plus connecting
            sock_connect=self.connect_timeout,
            sock_read=self.read_timeout,
        )


def check_base_url(service: str, url: str) -> str:
    """``url`` without a trailing slash; ConfigError unless it is an http(s) URL with a host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{service}: service URL must be http://HOST[:PORT], got {url!r}")
    if parts.query or parts.fragment:
        raise ConfigError(f"{service}: service URL must not have a query or fragment: {url!r}")
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ConfigError(f"{service}: bad port in service URL {url!r}") from None
    return url.rstrip("/")


@dataclass(slots=True)
class _Call:
    """A command on its way: its payload encoded once, and (when batched) its batch item."""

    command: Command
    payload: bytes
    traceparent: str | None
    item: bytes = b""

    def size(self) -> int:
        return len(self.item)


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    content: bytes


class HttpTransport(Transport):
    """Sends commands to services over HTTP (see the module docstring for the mapping).

    Each service gets its own client session and connection pool, opened on first use (a
    session belongs to the event loop it was opened in).
    """

    def __init__(self, base_urls: Mapping[str, str], settings: HttpSettings | None = None) -> None:
        self.settings = settings or HttpSettings()
        self.base_urls = {name: check_base_url(name, url) for name, url in base_urls.items()}
        self._sessions: dict[str, aiohttp.ClientSession] = {}
        self._batchers: dict[str, Batcher[_Call, Reply]] = {}
        self._unbatched: set[str] = set()  # services that answered a batch 404 or 405
        self._urls: dict[tuple[str, str], URL] = {}  # the command paths' URLs, made once

    def _session(self, service: str) -> aiohttp.ClientSession:
        session = self._sessions.get(service)
        if session is not None:
            return session
        if service not in self.base_urls:
            raise ConfigError(f"no service named {service!r}")
        connector = aiohttp.TCPConnector(
            limit=self.settings.max_connections,
            limit_per_host=0,
            keepalive_timeout=self.settings.keepalive_expiry,
        )
        headers = {"Accept": "application/json"}
        if self.settings.token is not None:
            headers["Authorization"] = f"Bearer {self.settings.token}"
        session = aiohttp.ClientSession(
            connector=connector,
            timeout=self.settings.timeout(),
            trust_env=False,
            headers=headers,
        )
        self._sessions[service] = session
        return session

    async def send(self, command: Command) -> Reply:
        try:
            body = encode_payload(command.payload)
        except (TypeError, ValueError, RecursionError):
            # Not JSON data (NaN, a set, a cycle, ...): it cannot even be put on the wire. This is
            # what the service answers such a payload.
            return Reply.invalid("payload is not JSON data")
        span: dict[str, str] = {}
        inject_current(span)  # the step's span, when tracing: the service continues it
        call = _Call(command, body, span.get(TRACEPARENT))
        if self.settings.max_batch == 1:
            return await self._send_one(call)
        if command.service not in self.base_urls:
            raise ConfigError(f"no service named {command.service!r}")
        try:
            call.item = encode_item(command, body, call.traceparent)
        except ValueError:  # a Sent-At that is not a finite number: the service says so alone
            return await self._send_one(call)
        return await self._batcher(command.service).submit(call)

    async def _send_one(self, call: _Call) -> Reply:
        """``call`` as a request of its own (``POST /commands/{action}``)."""
        command = call.command
        headers = {IDEMPOTENCY_KEY: encode_key(command.key), "Content-Type": "application/json"}
        if command.sent_at is not None:
            headers[SENT_AT] = encode_sent_at(command.sent_at)
        if call.traceparent is not None:
            headers[TRACEPARENT] = call.traceparent
        path = f"/commands/{quote(command.action, safe='')}"
        answer = await self._request(command.service, "POST", path, call.payload, headers)
        if answer.status == UNAUTHORIZED:
            raise self._refused(command.service)
        return _reply(command.service, answer)

    def _batcher(self, service: str) -> Batcher[_Call, Reply]:
        batcher = self._batchers.get(service)
        if batcher is None:

            async def send(calls: Sequence[_Call]) -> list[Reply | BaseException]:
                return await self._send_batch(service, calls)

            batcher = Batcher(
                send,
                _Call.size,
                max_in_flight=self.settings.batch_in_flight,
                max_batch=self.settings.max_batch,
                max_bytes=self.settings.max_batch_bytes,
            )
            self._batchers[service] = batcher
        return batcher

    async def _send_batch(
        self, service: str, calls: Sequence[_Call]
    ) -> list[Reply | BaseException]:
        """One request carrying ``calls`` (alone, or as ``POST /commands``); one outcome each."""
        if len(calls) == 1:
            try:
                return [await self._send_one(calls[0])]
            except Exception as exc:  # TransportError, AccessRefused: that command's outcome
                return [exc]
        if service in self._unbatched:
            return await asyncio.gather(*(self._send_one(c) for c in calls), return_exceptions=True)
        body = batch_body([call.item for call in calls])
        try:
            answer = await self._request(service, "POST", BATCH_PATH, body, _BATCH_HEADERS)
        except TransportError as exc:  # every command's outcome is unknown (or: not sent)
            return [type(exc)(str(exc)) for _ in calls]
        if answer.status == UNAUTHORIZED:
            return [self._refused(service) for _ in calls]
        if answer.status in _NO_BATCHES:
            # A service without the batch endpoint (nothing was applied): one request each.
            self._unbatched.add(service)
            return await self._send_batch(service, calls)
        if answer.status == TOO_LARGE:  # nothing applied: each command on its own
            return await asyncio.gather(*(self._send_one(c) for c in calls), return_exceptions=True)
        if answer.status != 200:
            why = f"{service}: a batch answered HTTP {answer.status}: outcome unknown"
            return [ResponseLost(why) for _ in calls]
        try:
            replies = read_replies(loads(answer.content), len(calls))
        except ValueError as exc:
            why = f"{service}: a malformed batch answer ({exc}): outcome unknown"
            return [ResponseLost(why) for _ in calls]
        unknown = f"{service}: no definite reply in the batch answer: outcome unknown"
        return [ResponseLost(unknown) if reply is None else reply for reply in replies]

    async def probe(self, service: str, key: str) -> Probe:
        if not key:
            self._session(service)  # an unknown service is still a ConfigError
            return Probe(KeyState.UNKNOWN)  # what the service says of a malformed key
        answer = await self._request(service, "GET", f"/keys/{encode_key(key)}")
        if answer.status == UNAUTHORIZED:
            raise self._refused(service)
        if answer.status != 200:
            raise ResponseLost(f"{service}: probe answered HTTP {answer.status}")
        data = _json_object(service, answer)
        try:
            state = KeyState(data["state"])
            stored = data.get("reply")
            reply = None if stored is None else _envelope(stored)
        except (KeyError, TypeError, ValueError):
            raise ResponseLost(f"{service}: malformed probe answer") from None
        return Probe(state, reply)

    async def check_access(self, service: str) -> None:
        """ConfigError if ``service`` refuses our token (a status probe of an unused key)."""
        answer = await self._request(service, "GET", f"/keys/{encode_key(_ACCESS_KEY)}")
        if answer.status == UNAUTHORIZED:
            raise self._refused(service)

    def _refused(self, service: str) -> AccessRefused:
        url = self.base_urls[service]
        return AccessRefused(f"the {service} service at {url}: {_REFUSED_TOKEN}")

    async def health(self, service: str) -> Mapping[str, Any]:
        """The service's ``/health`` answer; TransportError unless it answers 200."""
        answer = await self._request(service, "GET", "/health")
        if answer.status != 200:
            raise ResponseLost(f"{service}: health check answered HTTP {answer.status}")
        return _json_object(service, answer)

    async def _request(
        self,
        service: str,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> _Answer:
        session = self._session(service)
        url = self._urls.get((service, path))
        if url is None:
            # The path is percent-encoded already: yarl must not encode it again.
            url = URL(self.base_urls[service] + path, encoded=True)
            if path.startswith(BATCH_PATH):  # a command path: one per action (not a key's)
                self._urls[service, path] = url
        try:
            async with session.request(method, url, data=body, headers=headers) as response:
                return _Answer(response.status, await response.read())
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            # No connection: refused, DNS failure, connect (or pool) timeout. Nothing was sent.
            raise ServiceUnreachable(f"{service}: {_describe(exc)}") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ResponseLost(f"{service}: {_describe(exc)}") from exc

    async def close(self) -> None:
        for batcher in list(self._batchers.values()):
            await batcher.close()
        sessions, self._sessions = self._sessions, {}
        for session in sessions.values():
            await session.close()


UNAUTHORIZED = 401
_NO_BATCHES = (404, 405)
_BATCH_HEADERS = {"Content-Type": "application/json"}
_ACCESS_KEY = "ordersaga-health:health:action"
_REFUSED_TOKEN = (
    "HTTP 401: the service refused our token (set ORDERSAGA_SERVICE_TOKEN or --token-file"
    " to the token it was started with)"
)


def _describe(exc: BaseException) -> str:
    detail = str(exc)
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def _reply(service: str, answer: _Answer) -> Reply:
    expected = STATUS_OF_CODE.get(answer.status)
    if expected is None:
        raise ResponseLost(f"{service}: HTTP {answer.status}: outcome unknown")
    data = _json_object(service, answer)
    try:
        reply = _envelope(data)
    except (KeyError, TypeError, ValueError):
        raise ResponseLost(f"{service}: HTTP {answer.status} with a malformed body") from None
    if reply.status is not expected:
        raise ResponseLost(
            f"{service}: HTTP {answer.status} says {reply.status.value}, expected"
            f" {expected.value}: outcome unknown"
        )
    return reply


def _json_object(service: str, answer: _Answer) -> dict[str, Any]:
    try:
        data = loads(answer.content)
    except ValueError:
        raise ResponseLost(f"{service}: HTTP {answer.status} without a JSON body") from None
    if not isinstance(data, dict):
        raise ResponseLost(f"{service}: HTTP {answer.status}: the body is not an object")
    return data


def _envelope(data: Any) -> Reply:
    """A Reply from ``{"status", "body", "reason"}``; KeyError/TypeError/ValueError if bad."""
    if not isinstance(data, dict):
        raise TypeError("the reply is not an object")
    status = ReplyStatus(data["status"])
    body = data.get("body")
    body = {} if body is None else body
    reason = data.get("reason")
    if not isinstance(body, dict) or not (reason is None or isinstance(reason, str)):
        raise TypeError("a reply's body must be an object and its reason a string or null")
    return Reply(status, body, reason)
