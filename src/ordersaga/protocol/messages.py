"""The messages that travel between the orchestrator and the participant services.

This module is the only vocabulary that the saga engine, the transports and the services share.
It knows nothing about sagas or orders: a :class:`Command` asks a named service to perform a named
action under an idempotency key, and a :class:`Reply` says what the service made of it.

Idempotency keys have the form ``<saga id>:<step>:<phase>`` where phase is one of ``action``,
``compensate`` or ``confirm``. The part before the last colon, ``<saga id>:<step>``, names the
*resource* that the step creates in the service (a reservation, a shipment, a payment); the
action, its compensation and its confirmation all act on that one resource. The saga id may itself
contain colons, so keys are always split from the right.

Reply statuses (each is a definite answer from the service; a transport that got no answer raises
:class:`ordersaga.errors.TransportError` instead)::

    ok          the command was applied now, or earlier (a repeat gets the stored reply)
    refused     a definite business refusal; nothing was applied (no stock, card declined, ...)
    invalid     the command was malformed (bad key, bad payload); nothing was applied
    conflict    the key was used before with a different request body; nothing was applied
    in_flight   the same key is being processed right now; ask again later (retryable)
    expired     this delivery is older than the message-age limit and was not looked at:
                nothing was applied, but what an earlier delivery of the key did is not said
                (ask the status probe); see "Message age" below

Message age. Every command carries ``sent_at``, the wall-clock time (epoch seconds) it was first
sent; retries and duplicates of it carry the same value. A service refuses, as ``expired``, a
delivery older than its message-age limit (:data:`MAX_MESSAGE_AGE` by default), and the engine
never sends one that old. That bounds how late any delivery can still take effect, which is what
lets retention delete idempotency records and tombstones once they are older than the limit plus
a margin (:data:`MESSAGE_AGE_MARGIN`) — the argument is in :mod:`ordersaga.participant.retention`.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from json.encoder import encode_basestring
from types import MappingProxyType
from typing import Any

import orjson

from ordersaga.slots import slot_setter

__all__ = [
    "MAX_KEY_LENGTH",
    "MAX_MESSAGE_AGE",
    "MESSAGE_AGE_MARGIN",
    "Command",
    "KeyState",
    "Phase",
    "Probe",
    "Reply",
    "ReplyStatus",
    "canonical_bytes",
    "canonical_json",
    "canonical_text",
    "fingerprint",
    "make_key",
    "parse_key",
    "read_json",
    "reply_json",
]

JSON = Any
MAX_KEY_LENGTH = 512
#: Seconds after its first send beyond which a command is refused as ``expired`` (and not sent).
MAX_MESSAGE_AGE = 3600.0
#: Added to the limit before a record may be pruned: clock differences between machines, transit.
MESSAGE_AGE_MARGIN = 900.0


class Phase(enum.StrEnum):
    """Which part of a step's life a command belongs to."""

    ACTION = "action"
    COMPENSATE = "compensate"
    CONFIRM = "confirm"


class ReplyStatus(enum.StrEnum):
    """A service's answer to a command (see the table in the module docstring)."""

    OK = "ok"
    REFUSED = "refused"
    INVALID = "invalid"
    CONFLICT = "conflict"
    IN_FLIGHT = "in_flight"
    EXPIRED = "expired"

    @property
    def definite(self) -> bool:
        """True when the reply is final for this key (all but ``in_flight`` and ``expired``)."""
        return self is not _IN_FLIGHT and self is not _EXPIRED


#: Read once (see :mod:`ordersaga.saga.driver`: a member read through its enum class takes the
#: metaclass's slow attribute path on Python 3.11, ~0.9k instructions): the very member.
_OK, _IN_FLIGHT, _EXPIRED = ReplyStatus.OK, ReplyStatus.IN_FLIGHT, ReplyStatus.EXPIRED


class KeyState(enum.StrEnum):
    """What a service knows of an idempotency key (the answer to a status probe)."""

    APPLIED = "applied"  # the command took effect; the stored reply is attached
    REFUSED = "refused"  # the command was refused (or cancelled by a tombstone); nothing applied
    UNKNOWN = "unknown"  # the service never saw the key


@dataclass(frozen=True, slots=True)
class Command:
    """A request to ``service`` to perform ``action`` with ``payload`` under ``key``.

    ``sent_at`` is when the command was first sent (epoch seconds; see "Message age" above);
    ``None`` until the sender stamps it. A service takes an unstamped command as sent on arrival.
    """

    service: str
    action: str
    key: str
    payload: Mapping[str, JSON] = field(default_factory=dict)
    sent_at: float | None = None

    def fingerprint(self) -> str:
        """A digest of what the command asks for (action and payload, not the key)."""
        return fingerprint({"action": self.action, "payload": self.payload})

    def to_json(self) -> dict[str, JSON]:
        return {
            "service": self.service,
            "action": self.action,
            "key": self.key,
            "payload": dict(self.payload),
            "sent_at": self.sent_at,
        }


#: The default body of a reply: a new empty dict each time (see Reply.__init__).
_NO_BODY: Mapping[str, JSON] = MappingProxyType({})


@dataclass(frozen=True, slots=True, init=False)
class Reply:
    """A service's definite answer to a command."""

    status: ReplyStatus
    body: Mapping[str, JSON] = field(default_factory=dict)
    reason: str | None = None
    #: The canonical JSON of ``body`` once something asked for it (:meth:`body_text`: a
    #: service encodes each reply once, and the engine logs that very text as the step's
    #: result), else ``None``.
    body_json: str | None = field(default=None, compare=False, repr=False)

    def __init__(
        self,
        status: ReplyStatus,
        body: Mapping[str, JSON] = _NO_BODY,
        reason: str | None = None,
        body_json: str | None = None,
    ) -> None:
        # What the generated __init__ does (a body defaults to a new dict), with each field set
        # through its slot: several replies per order, and the generic frozen __init__ costs
        # twice as much.
        _set_status(self, status)
        _set_body(self, {} if body is _NO_BODY else body)
        _set_reason(self, reason)
        _set_body_json(self, body_json)

    @property
    def ok(self) -> bool:
        return self.status is _OK

    def body_text(self) -> str:
        """``body``'s canonical JSON, encoded at most once per reply (a reply never changes, so
        the text is kept in :attr:`body_json`, like a cached property)."""
        text = self.body_json
        if text is None:
            body = self.body
            text = canonical_json(body if type(body) is dict else dict(body))
            object.__setattr__(self, "body_json", text)
        return text

    def to_json(self) -> dict[str, JSON]:
        return {"status": self.status.value, "body": dict(self.body), "reason": self.reason}

    @classmethod
    def from_json(cls, data: Mapping[str, JSON]) -> Reply:
        return cls(ReplyStatus(data["status"]), dict(data.get("body") or {}), data.get("reason"))

    @classmethod
    def refused(cls, reason: str, **body: JSON) -> Reply:
        return cls(ReplyStatus.REFUSED, body, reason)

    @classmethod
    def invalid(cls, reason: str) -> Reply:
        return cls(ReplyStatus.INVALID, {}, reason)


_set_status = slot_setter(Reply, "status")
_set_body = slot_setter(Reply, "body")
_set_reason = slot_setter(Reply, "reason")
_set_body_json = slot_setter(Reply, "body_json")


@dataclass(frozen=True, slots=True)
class Probe:
    """The answer to "what became of key K?"; ``reply`` is the stored reply when known."""

    state: KeyState
    reply: Reply | None = None


def _canonical_encoder() -> Callable[[JSON], str]:
    # json.dumps builds a new encoder on every call, which costs more than encoding a small
    # message. Build one once: the C encoder without a circular-reference table (a cycle is
    # caught as deep recursion and reported like json.dumps does, as ValueError), or the
    # pure-Python one where the C encoder is missing.
    encoder = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    make: Any = getattr(json.encoder, "c_make_encoder", None)  # untyped in typeshed
    if make is None:  # pragma: no cover - CPython always has it
        return encoder.encode
    iterencode = make(None, encoder.default, encode_basestring, None, ":", ",", True, False, True)

    def encode(value: JSON) -> str:
        try:
            return "".join(iterencode(value, 0))
        except RecursionError:
            raise ValueError("circular reference or nesting too deep for JSON") from None

    return encode


_encode_canonical = _canonical_encoder()

#: The only types :func:`_plain` lets through to orjson (exact types: no subclass, no enum).
_SCALARS = frozenset((str, int, bool, type(None)))
_dumps = orjson.dumps
_loads = orjson.loads
_SORT_KEYS = orjson.OPT_SORT_KEYS


def _plain(value: JSON) -> bool:
    """Whether ``value`` is made of exactly dict, list, str, int, bool and None.

    For those orjson writes what the stdlib encoder does (the same escapes, keys sorted by code
    point), or refuses with ``orjson.JSONEncodeError`` where the stdlib one would still write
    something: an int beyond 64 bits, a lone surrogate, more than 254 levels, a key that is not
    exactly a str (the stdlib encoder writes int, float, bool and None keys as strings). Anything
    else may not come out the same (a float's digits, an enum or a str subclass by its value, a
    UUID or a dataclass at all instead of an error), so it is left to the stdlib encoder. Keys are
    not looked at here: orjson checks them itself.
    """
    kind = type(value)
    if kind is dict:
        value = value.values()
    elif kind is not list:
        return kind in _SCALARS
    for item in value:
        kind = type(item)
        if kind not in _SCALARS and not ((kind is dict or kind is list) and _plain(item)):
            return False
    return True


def _canonical_bytes(value: JSON) -> bytes | None:
    """The canonical JSON of ``value`` as UTF-8, by orjson, or None when it takes the stdlib
    encoder (see :func:`_plain`)."""
    try:
        if _plain(value):
            return _dumps(value, option=_SORT_KEYS)
    except (orjson.JSONEncodeError, RecursionError):  # RecursionError: a cycle, or too deep
        pass
    return None


def canonical_json(value: JSON) -> str:
    """JSON with sorted keys and no spaces: equal values give equal strings.

    Exactly ``json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``
    (or its exception; data in a cycle or nested too deep is a ValueError), written by orjson
    when that gives the same text, which is several times cheaper, else by the stdlib encoder.
    """
    data = _canonical_bytes(value)
    return _encode_canonical(value) if data is None else data.decode()


def canonical_text(value: JSON) -> tuple[str, bool]:
    """``canonical_json(value)``, and whether orjson wrote it: such text reads back exactly by
    ``read_json(text, plain=True)``, without the exactness walk (it holds no float, no integer
    beyond 64 bits and no lone surrogate: see :func:`_plain`)."""
    data = _canonical_bytes(value)
    return (_encode_canonical(value), False) if data is None else (data.decode(), True)


def canonical_bytes(value: JSON) -> bytes:
    """``canonical_json(value).encode()`` (or its exception), without the detour through a str
    where orjson writes the text."""
    data = _canonical_bytes(value)
    return _encode_canonical(value).encode() if data is None else data


def reply_json(status: str, body_json: str, reason: str | None) -> str:
    """``canonical_json(Reply(status, body, reason).to_json())`` from the body's canonical JSON
    (the same text, built without encoding the body again: its keys sort as body, reason,
    status)."""
    why = "null" if reason is None else _encode_canonical(reason)
    return f'{{"body":{body_json},"reason":{why},"status":"{status}"}}'


def fingerprint(value: JSON) -> str:
    """A digest of JSON data (its canonical form): equal data, equal fingerprint."""
    return hashlib.sha256(canonical_bytes(value)).hexdigest()


def read_json(text: str, *, plain: bool = False) -> JSON:
    """Exactly ``json.loads(text)`` (or its exception), parsed by orjson when that gives the same
    value, which is several times cheaper. ``plain``: ``text`` is what :func:`canonical_text`
    wrote by orjson, which orjson reads back exactly (no check needed).

    orjson refuses what the stdlib parser still accepts (``NaN``, ``Infinity``, a number that
    overflows to infinity, an escaped lone surrogate, more than 1024 levels) and reads an integer
    beyond 64 bits as a float; so its value is kept only when it holds no float at all (floats
    themselves parse to the same value, but one cannot be told from a rounded integer), else the
    stdlib parser reads the text again. Duplicate keys: both keep the last. A parsed value holds
    only dicts, lists, str, int, bool, None and float, so :func:`_plain` tells it has no float.
    """
    if plain:
        return _loads(text)
    try:
        value = _loads(text)
        if _plain(value):
            return value
    except (orjson.JSONDecodeError, RecursionError):
        pass
    return json.loads(text)


_PHASES = {str(phase): phase for phase in Phase}


def make_key(saga_id: str, step: str, phase: Phase) -> str:
    return f"{saga_id}:{step}:{phase}"  # a StrEnum formats as its value


def parse_key(key: str) -> tuple[str, str, Phase]:
    """Split a key into (saga id, step, phase); raise ValueError when it is malformed."""
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH:
        raise ValueError("idempotency key must be a non-empty string of at most 512 characters")
    # isprintable() refuses every whitespace character but the ASCII space.
    if not key.isprintable() or " " in key:
        raise ValueError("idempotency key must be printable and contain no whitespace")
    parts = key.rsplit(":", 2)
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise ValueError("idempotency key must look like <saga id>:<step>:<phase>")
    phase = _PHASES.get(parts[2])
    if phase is None:
        raise ValueError(f"unknown phase {parts[2]!r} in idempotency key")
    return parts[0], parts[1], phase


def resource_of(key: str) -> str:
    """The resource a key acts on: ``<saga id>:<step>``."""
    saga_id, step, _ = parse_key(key)
    return f"{saga_id}:{step}"
