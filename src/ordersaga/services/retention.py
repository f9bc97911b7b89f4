"""What each service's retention deletes and carries forward (see
:mod:`ordersaga.participant.retention` for why deleting is safe).

    inventory  reservations; a committed one's units stay counted as ``sold`` per item
    shipping   shipments; nothing to carry (no counter sums over them)
    payment    payments; a captured one's amount stays counted as ``captured`` per user

Held reservations and authorized payments are never deleted (their sagas are not finished), so
only the sold and captured totals need carrying.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from ordersaga.db import Row
from ordersaga.participant.retention import ResourceRetention

__all__ = ["CAPTURED", "RETENTION", "SOLD"]

SOLD = "sold"  # pruned_totals name: units of an item sold by pruned reservations
CAPTURED = "captured"  # pruned_totals name: cents captured from a user by pruned payments


def _sold(row: Row) -> Iterable[tuple[str, str, int]]:
    if row["state"] != "committed":
        return ()
    return [(SOLD, line["item_id"], int(line["quantity"])) for line in json.loads(row["lines"])]


def _captured(row: Row) -> Iterable[tuple[str, str, int]]:
    if row["state"] != "captured" or row["user_id"] is None:
        return ()
    return [(CAPTURED, str(int(row["user_id"])), int(row["amount_cents"]))]


RETENTION: Mapping[str, ResourceRetention] = {
    "inventory": ResourceRetention("reservations", _sold),
    "shipping": ResourceRetention("shipments"),
    "payment": ResourceRetention("payments", _captured),
}
