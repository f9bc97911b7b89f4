"""The batch form of the HTTP wire format: many commands for one service in one request.

::

    POST {base}/commands
    Content-Type: application/json

    {"commands": [{"action": "reserve", "key": "<key>", "payload": {...},
                   "sent_at": 1767225600.0, "traceparent": "00-..."}, ...]}

``sent_at`` and ``traceparent`` are optional, as their headers are on ``POST
/commands/{action}``; the key is a plain JSON string (no percent-encoding). A well-formed batch is
answered ``200`` with one reply per command, in the order of the commands::

    {"replies": [{"code": 200, "status": "ok", "body": {...}, "reason": null}, ...]}

Each reply is exactly what ``POST /commands/{action}`` answers that command, its status code in
``code`` (the table of :mod:`ordersaga.protocol.wire`; ``503`` with ``"status": "unavailable"``
when the database failed that command). A malformed item gets its own ``400`` reply and does not
spoil its neighbours. Every command keeps its own idempotency key: a batch sent twice replays the
stored replies and applies nothing twice.

The batch as a whole is refused, with nothing applied, when it is malformed (``400``: not JSON,
not an object, no ``commands`` list, an empty list), holds more than :data:`MAX_BATCH_COMMANDS`
commands or is larger than the service accepts (``413``); the answer is then the ordinary
``invalid`` envelope. Anything else (a 5xx, a timeout, a reset, a body that does not parse) leaves
the outcome of *every* command in it unknown, as with a single command.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from json.encoder import encode_basestring_ascii
from typing import Any

from ordersaga.protocol.messages import Command, Reply
from ordersaga.protocol.wire import CODE_OF_STATUS, STATUS_OF_CODE, UNAVAILABLE

__all__ = [
    "BATCH_PATH",
    "MAX_BATCH_COMMANDS",
    "WIRE_JSON",
    "BatchItem",
    "batch_body",
    "encode_item",
    "parse_batch",
    "read_replies",
    "reply_item",
    "unavailable_item",
]

BATCH_PATH = "/commands"
#: The most commands one batch may carry (more: ``413``).
MAX_BATCH_COMMANDS = 512


#: Compact ASCII JSON without NaN or infinities: the encoding of the wire's JSON.
WIRE_JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
#: What :data:`WIRE_JSON` writes for a str (its ``encode`` calls it for one).
_string = encode_basestring_ascii


def encode_item(command: Command, payload: bytes, traceparent: str | None) -> bytes:
    """One command as a batch item (ASCII JSON), around its ``payload`` already encoded.

    The text of ``{"action", "key", "sent_at", "traceparent", "payload"}`` as :data:`WIRE_JSON`
    encodes it, put together from its values' encodings (the encoder's own string escaping and
    a float's repr, instead of a dict and a whole encoding); ValueError for a ``sent_at`` that
    is not finite.
    """
    text = f'{{"action":{_string(command.action)},"key":{_string(command.key)}'
    if command.sent_at is not None:
        sent_at = float(command.sent_at)
        if not math.isfinite(sent_at):
            raise ValueError(f"sent_at is not a finite number: {sent_at!r}")
        text += f',"sent_at":{sent_at!r}'  # what the encoder writes for a finite float
    if traceparent is not None:
        text += f',"traceparent":{_string(traceparent)}'
    return text.encode("ascii") + b',"payload":' + payload + b"}"


def batch_body(items: Sequence[bytes]) -> bytes:
    """The request body carrying the encoded ``items``."""
    return b'{"commands":[' + b",".join(items) + b"]}"


#: A parsed item: the command and its traceparent, or the reason it is malformed.
BatchItem = tuple[Command, str | None] | str


def parse_batch(service: str, data: Any) -> list[BatchItem]:
    """The items of a parsed batch body; ValueError (the reason) if the batch is malformed.

    Raises ``OverflowError`` when it holds more than :data:`MAX_BATCH_COMMANDS` commands.
    """
    if not isinstance(data, dict):
        raise ValueError('a batch must be a JSON object: {"commands": [...]}')
    items = data.get("commands")
    if not isinstance(items, list):
        raise ValueError('a batch must hold a "commands" list')
    if not items:
        raise ValueError("a batch must hold at least one command")
    if len(items) > MAX_BATCH_COMMANDS:
        raise OverflowError(f"a batch holds at most {MAX_BATCH_COMMANDS} commands")
    return [_item(service, index, item) for index, item in enumerate(items)]


def _item(service: str, index: int, item: Any) -> BatchItem:
    where = f"commands[{index}]"
    if not isinstance(item, dict):
        return f"{where} is not an object"
    action, key = item.get("action"), item.get("key")
    if not isinstance(action, str) or not action:
        return f"{where}: action must be a non-empty string"
    if not isinstance(key, str):
        return f"{where}: key must be a string"
    if "payload" not in item:
        return f"{where}: payload is missing"
    sent_at = item.get("sent_at")
    if sent_at is not None and not _finite(sent_at):
        return f"{where}: sent_at must be a number of seconds since the epoch"
    traceparent = item.get("traceparent")
    if traceparent is not None and not isinstance(traceparent, str):
        return f"{where}: traceparent must be a string"
    stamp = None if sent_at is None else float(sent_at)
    return Command(service, action, key, item["payload"], stamp), traceparent


def _finite(value: Any) -> bool:
    if type(value) not in (int, float):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an integer beyond any float
        return False


def reply_item(reply: Reply) -> dict[str, Any]:
    """A reply as the batch answers it: its status code and envelope."""
    return {"code": CODE_OF_STATUS[reply.status], **reply.to_json()}


def unavailable_item(reason: str) -> dict[str, Any]:
    """The reply of a command the database failed: nothing applied, retry the same key."""
    return {"code": UNAVAILABLE, "status": "unavailable", "reason": reason}


def read_replies(data: Any, count: int) -> list[Reply | None]:
    """The replies of a batch answer, ``None`` for each command whose outcome is unknown (a 5xx
    or a code and envelope that disagree); ValueError unless it answers ``count`` commands."""
    if not isinstance(data, dict) or not isinstance(data.get("replies"), list):
        raise ValueError('the answer is not {"replies": [...]}')
    replies = data["replies"]
    if len(replies) != count:
        raise ValueError(f"{len(replies)} replies to {count} commands")
    return [_read_reply(item) for item in replies]


def _read_reply(item: Any) -> Reply | None:
    if not isinstance(item, dict):
        return None
    code = item.get("code")
    expected = STATUS_OF_CODE.get(code) if type(code) is int else None
    # A status a str equal to the code's (a StrEnum equals its value), else unknown.
    if expected is None or item.get("status") != expected:
        return None
    body = item.get("body")
    body = {} if body is None else body
    reason = item.get("reason")
    if not isinstance(body, dict) or not (reason is None or isinstance(reason, str)):
        return None
    return Reply(expected, body, reason)
