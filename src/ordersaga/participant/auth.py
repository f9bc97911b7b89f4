"""Bearer-token authentication for the HTTP edges (services and the order API), as ASGI.

:class:`BearerAuth` wraps an ASGI app. Every HTTP request but those to a public path (``/health``,
``/metrics`` and the API documentation) must carry ``Authorization: Bearer <token>`` with one of
the accepted tokens; any other request is answered ``401`` with ``WWW-Authenticate: Bearer``
before the app sees it, so nothing it would have done happens (its body is not even read).

Why it is safe: the presented value is compared with each accepted one by
:func:`hmac.compare_digest` on the SHA-256 of both, so the time taken does not depend on how much
of a token matched nor on its length; the check runs before routing, so no operation, known or
not, is reachable without a token. A token is never logged or echoed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any

__all__ = ["PUBLIC_PATHS", "PUBLIC_PREFIXES", "BearerAuth", "bearer_identity"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Paths anyone may GET: liveness, metrics, and the documentation of the API itself.
PUBLIC_PATHS = frozenset({"/health", "/metrics", "/openapi.json", "/docs", "/redoc"})
#: Path prefixes left to others: the documentation's static assets.
PUBLIC_PREFIXES: tuple[str, ...] = ("/docs/static/",)
_PREFIX = b"bearer "


def _digest(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


def bearer_identity(scope: Scope, identities: Mapping[bytes, str]) -> str | None:
    """Whose token the request in ``scope`` carries (``identities``: SHA-256 of a token → who).

    Every accepted token is compared, in constant time, whatever matched before.
    """
    presented = b""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            if value[: len(_PREFIX)].lower() == _PREFIX:
                presented = value[len(_PREFIX) :].strip()
            break
    digest = _digest(presented)
    found: str | None = None
    for expected, who in identities.items():
        if hmac.compare_digest(digest, expected) and presented:
            found = who
    return found


def identities_of(tokens: Iterable[tuple[str, str]]) -> dict[bytes, str]:
    """``(token, who)`` pairs as :func:`bearer_identity` takes them."""
    return {_digest(token.encode()): who for token, who in tokens}


class BearerAuth:
    """Requires a bearer token on every non-public HTTP request (see the module docstring).

    The identity behind the token is put in ``scope["state"]["client"]`` for the app.
    """

    def __init__(
        self,
        app: ASGIApp,
        tokens: Iterable[tuple[str, str]],
        *,
        public: frozenset[str] = PUBLIC_PATHS,
        public_prefixes: tuple[str, ...] = PUBLIC_PREFIXES,
        realm: str = "ordersaga",
    ) -> None:
        self.app = app
        self.identities = identities_of(tokens)
        self.public = public
        self.public_prefixes = public_prefixes
        self.challenge = f'Bearer realm="{realm}"'.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in self.public or path.startswith(self.public_prefixes):
            await self.app(scope, receive, send)
            return
        who = bearer_identity(scope, self.identities)
        if who is None:
            await self._refuse(send)
            return
        scope.setdefault("state", {})["client"] = who
        await self.app(scope, receive, send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps(
            {"status": "unauthorized", "reason": "a valid 'Authorization: Bearer' token is needed"}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", self.challenge),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
