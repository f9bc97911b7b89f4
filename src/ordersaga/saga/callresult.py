"""How a step call ended: :class:`CallOutcome` (see :mod:`.calls` for the four ways)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from ordersaga.protocol.messages import Command, Reply, ReplyStatus
from ordersaga.saga.store.base import Attempt
from ordersaga.slots import tuple_new

__all__ = ["DEADLINE_MARK", "CallOutcome", "CallStatus", "outcome_of"]

#: How the reason of a call ended by the order's deadline ends.
DEADLINE_MARK = "the order's deadline passed"


class CallStatus(enum.StrEnum):
    SUCCEEDED = "succeeded"
    REFUSED = "refused"
    UNKNOWN = "unknown"
    UNDELIVERED = "undelivered"  # past the order's deadline, never reached the service


#: The body of an outcome without one (read-only: the default is shared).
_NO_BODY: Mapping[str, Any] = MappingProxyType({})


class CallOutcome(NamedTuple):
    """How a step call ended (an immutable value; a named tuple: the engine makes one a call)."""

    status: CallStatus
    body: Mapping[str, Any] = _NO_BODY
    reason: str | None = None
    attempts: int = 1
    probed: bool = False
    expired: bool = False  # ended by the order's deadline (the saga is flagged for attention)
    trail: tuple[Attempt, ...] = ()  # every attempt and probe, in order
    body_json: str | None = None  # the body's canonical JSON, when the reply carried it


#: Read once: an enum member read through its class is slow on Python 3.11 (see ``_ACTION`` in
#: :mod:`.driver`); every call's outcome reads two.
_OK, _SUCCEEDED, _REFUSED = ReplyStatus.OK, CallStatus.SUCCEEDED, CallStatus.REFUSED


def outcome_of(
    command: Command,
    reply: Reply,
    attempts: int = 1,
    probed: bool = False,
    trail: tuple[Attempt, ...] = (),
) -> CallOutcome:
    """The outcome of a call that got the definite ``reply`` (by default at its one attempt,
    which keeps no trail: see :mod:`.trail`)."""
    if reply.status is _OK:
        status, reason = _SUCCEEDED, None
    else:
        status = _REFUSED
        reason = f"{command.service} {command.action}: {reply.reason or reply.status.value}"
    body = reply.body
    if type(body) is not dict:  # a reply's own dict is not copied (nothing changes it)
        body = dict(body)
    return tuple_new(
        CallOutcome, (status, body, reason, attempts, probed, False, trail, reply.body_json)
    )
