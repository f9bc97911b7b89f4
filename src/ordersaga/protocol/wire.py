"""The HTTP wire format shared by the service apps and the HTTP transport.

One command is one request::

    POST {base}/commands/{action}
    Idempotency-Key: <key>                 (see "Keys in headers" below)
    Content-Type: application/json
    <the payload: a JSON object>

and its answer is the reply envelope ``{"status": ..., "body": {...}, "reason": str | null}``
under a status code that says, on its own, what became of the command:

    ====  ===============  =================================================================
    code  reply status     meaning
    ====  ===============  =================================================================
    200   ``ok``           applied, now or earlier (a repeat of the key replays the stored
                           reply, identical to the first)
    400   ``invalid``      malformed request: no or bad ``Idempotency-Key``, a body that is
                           not JSON, a payload that breaks the action's schema, a key whose
                           phase is not the action's, an unknown action; nothing was applied
    409   ``conflict``     the key was used before with a different request; nothing applied
    413   ``invalid``      the body is larger than the service accepts; nothing was applied
    422   ``refused``      a business refusal (no stock, country not served, card declined,
                           a transition the state machine forbids): definite, never worth
                           retrying, nothing applied; a repeat of the key gets it again
    410   ``expired``      the command was first sent longer ago than the service's message-age
                           limit (``Sent-At`` header): this delivery was refused unread and
                           applied nothing; the key's fate is the status probe's to tell
    425   ``in_flight``    the key is being processed right now; ask again after
                           ``Retry-After`` seconds (the only other non-final answer)
    503   (none)           the service's database is unavailable (``Retry-After``); the
                           command was not applied: retry under the same key
    ====  ===============  =================================================================

The HTTP transport maps each of these codes back to exactly the
:class:`~ordersaga.protocol.messages.Reply` the in-process transport would have returned, and only
when
the envelope's ``status`` agrees with the code: a 4xx that a proxy or a wrong server made up is
not mistaken for a definite answer. Every other outcome (5xx, an unlisted code, a malformed
envelope, a timeout, a reset) leaves the command's outcome unknown, which is what
:class:`~ordersaga.errors.ResponseLost` means. ``GET {base}/keys/{key}`` is the status probe.
``POST {base}/commands`` carries many commands at once (:mod:`ordersaga.protocol.batchwire`), each
answered with its code from the table above.

Keys in headers: an idempotency key may hold any printable character (an order id may be
non-ASCII), but a header value should be ASCII. The header therefore carries the key
percent-encoded as UTF-8 (RFC 3986); letters, digits and ``-._~:`` stand for themselves, so a
plain key such as ``order-7:reserve:action`` is sent as is. The structured-field string form of
the IETF idempotency-key draft (``"order-7:reserve:action"``, in double quotes, with ``\\"`` and
``\\\\`` escapes) is accepted too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from urllib.parse import quote, unquote

from ordersaga.protocol.messages import ReplyStatus

__all__ = [
    "CODE_OF_STATUS",
    "IDEMPOTENCY_KEY",
    "SENT_AT",
    "STATUS_OF_CODE",
    "UNAVAILABLE",
    "decode_key",
    "decode_sent_at",
    "encode_key",
    "encode_sent_at",
]

IDEMPOTENCY_KEY = "Idempotency-Key"
SENT_AT = "Sent-At"

#: The status code of each reply status (what the service answers).
CODE_OF_STATUS: Mapping[ReplyStatus, int] = {
    ReplyStatus.OK: 200,
    ReplyStatus.INVALID: 400,
    ReplyStatus.CONFLICT: 409,
    ReplyStatus.REFUSED: 422,
    ReplyStatus.IN_FLIGHT: 425,
    ReplyStatus.EXPIRED: 410,
}

#: The reply status each definite code stands for (what the transport reads back).
STATUS_OF_CODE: Mapping[int, ReplyStatus] = {
    **{code: status for status, code in CODE_OF_STATUS.items()},
    413: ReplyStatus.INVALID,
}

#: The code of "the database is unavailable: nothing was applied, retry later".
UNAVAILABLE = 503
TOO_LARGE = 413

_SAFE = ":"  # besides the unreserved characters, which quote() never encodes


def encode_key(key: str) -> str:
    """The ``Idempotency-Key`` header value (or probe path segment) that carries ``key``."""
    return quote(key, safe=_SAFE)


def encode_sent_at(sent_at: float) -> str:
    """The ``Sent-At`` header value for ``sent_at``."""
    return repr(float(sent_at))


def decode_sent_at(value: str) -> float:
    """The ``sent_at`` a ``Sent-At`` header carries; ValueError unless a finite number."""
    number = float(value)
    if not math.isfinite(number):
        raise ValueError("Sent-At must be a finite number of seconds since the epoch")
    return number


def decode_key(value: str) -> str:
    """The key an ``Idempotency-Key`` header value carries; ValueError when it cannot be read."""
    if not value.isascii():
        raise ValueError("Idempotency-Key must be ASCII: percent-encode other characters")
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        return _sf_string(value[1:-1])
    try:
        return unquote(value, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise ValueError("Idempotency-Key is not percent-encoded UTF-8") from None


def _sf_string(inner: str) -> str:
    """The content of an RFC 8941 string (``\\"`` and ``\\\\`` are its only escapes)."""
    out: list[str] = []
    chars = iter(inner)
    for char in chars:
        if not " " <= char <= "~":
            raise ValueError("Idempotency-Key string has a character outside printable ASCII")
        if char == '"':
            raise ValueError("Idempotency-Key string has an unescaped '\"'")
        if char == "\\":
            escaped = next(chars, "")
            if escaped not in ('"', "\\"):
                raise ValueError("Idempotency-Key string has a bad escape")
            char = escaped
        out.append(char)
    return "".join(out)
