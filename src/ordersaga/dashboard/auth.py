"""Who may act: the operator token, the sessions it opens, and the same-origin rule for changes.

The dashboard reads without a token. Its operator actions (retry, resolve, cancel) need the
operator token the process was started with (``ORDERSAGA_OPERATOR_TOKEN`` or ``--token-file``;
none: the dashboard is read-only and refuses every change). A person signs in by typing the
token once: the server answers with a random session id in an ``HttpOnly``, ``SameSite=Strict``
cookie (script on the page cannot read it, another site cannot send it), kept in this process's
memory only and valid for :data:`SESSION_SECONDS`. A script may send ``Authorization: Bearer
<token>`` instead. The token itself is never stored, echoed or logged.

Why a change cannot be forged by another site (CSRF): every change is a ``POST`` with a JSON
body, which a cross-site form cannot send and a cross-site ``fetch`` cannot send without a CORS
preflight this server never answers; on top of that a request whose ``Origin`` (or
``Sec-Fetch-Site``) says it comes from elsewhere is refused before anything is read.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.requests import Request

__all__ = ["COOKIE", "SESSION_SECONDS", "Operators", "same_origin"]

COOKIE = "ordersaga_operator"
SESSION_SECONDS = 12 * 3600.0
_MAX_SESSIONS = 1000


@dataclass(slots=True)
class Operators:
    """The operator token of this process and the sessions signed in with it."""

    token: str | None
    clock: Callable[[], float] = time.monotonic
    _sessions: dict[str, tuple[str, float]] = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        return self.token is not None

    def check_token(self, given: str) -> bool:
        """Whether ``given`` is the token (in constant time)."""
        if self.token is None:
            return False
        return hmac.compare_digest(given.encode(), self.token.encode())

    def sign_in(self, name: str) -> str:
        """A new session for ``name`` (the caller checked the token): its id."""
        now = self.clock()
        self._sessions = {
            sid: (who, until) for sid, (who, until) in self._sessions.items() if until > now
        }
        while len(self._sessions) >= _MAX_SESSIONS:  # the oldest go first
            self._sessions.pop(next(iter(self._sessions)))
        session = secrets.token_urlsafe(32)
        self._sessions[session] = (name, now + SESSION_SECONDS)
        return session

    def sign_out(self, session: str | None) -> None:
        if session is not None:
            self._sessions.pop(session, None)

    def who(self, request: Request) -> str | None:
        """The signed-in operator's name, or None (not signed in, or no token configured)."""
        if self.token is None:
            return None
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() == "bearer" and given:
            return "api" if self.check_token(given.strip()) else None
        session = request.cookies.get(COOKIE)
        if session is None:
            return None
        found = self._sessions.get(session)
        if found is None or found[1] <= self.clock():
            return None
        return found[0]


def same_origin(request: Request) -> bool:
    """Whether a change request comes from a page of this very server (see the module doc)."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True  # not a browser's cross-site request (browsers send Origin on every POST)
    host = request.headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}")
