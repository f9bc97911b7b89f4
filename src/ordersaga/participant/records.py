"""A participant's idempotency records: one row per key, written with the command's effects.

Each row holds the key, the fingerprint of the request and the reply (its canonical JSON) in
the ``idempotency`` table (see :mod:`ordersaga.participant.schema`); the command runner
(:mod:`ordersaga.participant.kit`) inserts it in the transaction that applies the command. A
repeat of the key with the same fingerprint gets the stored reply back, exactly; another
fingerprint gets ``conflict``.

Each reply is encoded once. Its body's canonical JSON is built when the record is, and the
record's text is put together around it (:func:`ordersaga.protocol.messages.reply_json`, the
same bytes as encoding the whole reply); the reply handed back carries that body text
(:attr:`~ordersaga.protocol.messages.Reply.body_json`), so the engine logs the step's result
without encoding it again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ordersaga.db import Row, Tx
from ordersaga.participant.plan import Cancelled, Plan, Reader
from ordersaga.protocol.messages import (
    KeyState,
    Phase,
    Probe,
    Reply,
    ReplyStatus,
    parse_key,
    reply_json,
)

__all__ = [
    "RECORD",
    "REWRITE",
    "Encoded",
    "encode",
    "handed_back",
    "is_canonical",
    "probe",
    "replay",
    "stored",
    "stored_reply",
]

RECORD = (
    "INSERT INTO idempotency (key, fingerprint, status, reply, created_at) VALUES (?, ?, ?, ?, ?)"
)
#: A record's reply replaced, in the transaction that inserted it (a corrected decision).
REWRITE = "UPDATE idempotency SET status = ?, reply = ? WHERE key = ?"
_LOOKUP = "SELECT fingerprint, status, reply FROM idempotency WHERE key = ?"
_SCALARS = (str, int, bool, type(None))

#: A reply's status as a plain string (its record's status column), its body as canonical JSON,
#: and its record's text (the whole reply).
Encoded = tuple[str, str, str]

#: Each status as a plain str: a StrEnum member is a str subclass, and both ``str()`` of it and
#: formatting it into the record's text cost a call of their own (a record per command).
_STATUS_TEXT = {status: str(status) for status in ReplyStatus}


def is_canonical(body: Mapping[str, Any]) -> bool:
    """Whether ``body`` equals its own JSON round trip, key order included (a flat, sorted dict).

    Then handing ``body`` back is the same as reading it back from its canonical JSON.
    """
    if type(body) is not dict:
        return False
    previous = ""
    for key, value in body.items():
        if type(key) is not str or key <= previous or type(value) not in _SCALARS:
            return False
        previous = key
    return True


def _round_trips(value: Any) -> bool:
    """Whether ``value`` equals its own JSON round trip, nested lists and objects included.

    A scalar item is told in the loop, without a call of its own (a reply's lines hold many).
    """
    kind = type(value)
    if kind is dict:
        previous = ""
        for key, item in value.items():
            if type(key) is not str or key <= previous:
                return False
            kind = type(item)
            if kind not in _SCALARS and not ((kind is dict or kind is list) and _round_trips(item)):
                return False
            previous = key
        return True
    if kind is list:
        for item in value:
            kind = type(item)
            if kind not in _SCALARS and not ((kind is dict or kind is list) and _round_trips(item)):
                return False
        return True
    return kind in _SCALARS


def encode(reply: Reply) -> Encoded:
    """``reply``'s status text, body JSON and the text its record stores (the body encoded
    once)."""
    status = _STATUS_TEXT[reply.status]
    body_json = reply.body_text()
    return status, body_json, reply_json(status, body_json, reply.reason)


def handed_back(reply: Reply, encoded: Encoded) -> Reply:
    """Exactly what a repeat will read from the record, with the body's JSON attached: most
    replies are already in that form, the others are read back from their JSON."""
    _, body_json, text = encoded
    body = reply.body
    if is_canonical(body) or _round_trips(body):
        return reply  # its body's JSON is kept in it (see Reply.body_text)
    read = Reply.from_json(json.loads(text))
    return Reply(read.status, read.body, read.reason, body_json)


async def write_plan(tx: Tx, plan: Plan, encoded: Encoded) -> Reply:
    """Run the plan's claim and writes in ``tx``, each checked to change the rows it expects;
    its reply (exactly what a repeat will read back: see :func:`handed_back`)."""
    if plan.claim is not None:
        await tx.write(*plan.claim)
    for sql, params, expect in plan.writes:  # unpacked: a call with * takes the slow path
        await tx.write(sql, params, expect)
    return handed_back(plan.reply, encoded)


async def stored(reader: Reader, key: str) -> Row | None:
    """The record of ``key``, if any."""
    return await reader.fetchone(_LOOKUP, key)


def stored_reply(record: Row) -> Reply:
    """The reply a record holds."""
    return Reply.from_json(json.loads(record["reply"]))


def replay(key: str, fingerprint: str, record: Row) -> Reply:
    """The stored reply for a repeat of ``key``, or ``conflict`` for another request."""
    if record["fingerprint"] != fingerprint:
        return Reply(
            ReplyStatus.CONFLICT,
            {},
            f"idempotency key {key!r} was already used for a different request",
        )
    return stored_reply(record)


async def probe(reader: Reader, key: str, cancelled: Cancelled) -> Probe:
    """What became of ``key``: applied, refused (also: cancelled by a tombstone), unknown."""
    try:
        saga_id, step, phase = parse_key(key)
    except ValueError:
        return Probe(KeyState.UNKNOWN)
    record = await stored(reader, key)
    if record is not None:
        reply = stored_reply(record)
        return Probe(KeyState.APPLIED if reply.ok else KeyState.REFUSED, reply)
    if phase is Phase.ACTION:
        # A tombstone means the action can never apply: its late arrival will be refused.
        refusal = await cancelled(reader, f"{saga_id}:{step}")
        if refusal is not None:
            return Probe(KeyState.REFUSED, refusal)
    return Probe(KeyState.UNKNOWN)
