"""The message-age limit: a service refuses, unread, any command first sent too long ago.

This is what bounds how late a delivery (a retry, a duplicate, a late arrival) can still take
effect, and so what lets retention delete idempotency records and tombstones at all; the whole
argument is in :mod:`ordersaga.participant.retention`.
"""

from __future__ import annotations

from ordersaga.protocol.messages import Command, Reply, ReplyStatus

__all__ = ["expired"]


def expired(command: Command, limit: float | None, now: float) -> Reply | None:
    """The ``expired`` refusal if ``command`` was first sent more than ``limit`` s before ``now``.

    ``None`` (go on) for a command within the limit, one without ``sent_at`` (taken as sent on
    arrival), or when there is no limit. A ``sent_at`` in the future (another machine's clock
    ahead of ours) counts as sent now.
    """
    if limit is None or command.sent_at is None:
        return None
    age = now - float(command.sent_at)
    if age <= limit:
        return None
    return Reply(
        ReplyStatus.EXPIRED,
        {},
        f"expired: first sent {age:.0f} s ago, over the message-age limit of {limit:.0f} s",
    )
