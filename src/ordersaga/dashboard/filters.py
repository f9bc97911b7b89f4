"""The saga list's filters, read from the query string (``/?status=failed&attention=1``).

A link carries the whole filter, so a filtered list can be bookmarked or pasted into a ticket.
A bad value is a :class:`FilterError` with a one-line reason (the page shows it, with a 400).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

from ordersaga.saga.store.base import SagaStatus
from ordersaga.saga.store.operator import SagaFilter

__all__ = ["AGES", "DEFAULT_LIMIT", "MAX_LIMIT", "STATUSES", "FilterError", "ListFilter"]

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
STATUSES = tuple(status.value for status in SagaStatus)
#: The choices the page offers for "unchanged for longer than" (any DURATION is accepted).
AGES = ("1m", "5m", "15m", "1h", "6h", "1d", "7d")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_MAX_ID = 200


class FilterError(ValueError):
    """A query parameter the list cannot use."""


def _seconds(text: str) -> float:
    match = _DURATION.fullmatch(text)
    if match is None:
        raise FilterError(f"older_than: not a duration: {text!r} (a number and s, m, h, d or w)")
    return float(match[1]) * _UNITS[match[2]]


@dataclass(frozen=True, slots=True)
class ListFilter:
    """What the list shows; the query string it came from is :meth:`query`."""

    status: str | None = None
    attention: bool = False
    older_than: str | None = None
    q: str | None = None  # an id prefix
    cursor: str | None = None
    limit: int = DEFAULT_LIMIT

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> ListFilter:
        status = params.get("status") or None
        if status is not None and status not in STATUSES:
            raise FilterError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
        attention = params.get("attention", "")
        if attention not in ("", "0", "1", "true", "false", "on"):
            raise FilterError("attention must be 1 or 0")
        older = params.get("older_than") or None
        if older is not None:
            _seconds(older)
        q = (params.get("q") or "").strip() or None
        if q is not None and len(q) > _MAX_ID:
            raise FilterError(f"q: an id is at most {_MAX_ID} characters")
        cursor = params.get("cursor") or None
        if cursor is not None and (not cursor.isdigit() or len(cursor) > 19):
            raise FilterError("cursor must be the one a 'next page' link carries")
        text = params.get("limit") or str(DEFAULT_LIMIT)
        if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
            raise FilterError(f"limit must be an integer within [1, {MAX_LIMIT}]")
        return cls(status, attention in ("1", "true", "on"), older, q, cursor, int(text))

    def saga_filter(self, now: float) -> SagaFilter:
        """The store's query at wall-clock time ``now``."""
        return SagaFilter(
            status=None if self.status is None else SagaStatus(self.status),
            needs_attention=True if self.attention else None,
            updated_before=None if self.older_than is None else now - _seconds(self.older_than),
            id_prefix=self.q,
            limit=self.limit,
            cursor=self.cursor,
        )

    def query(self, **changes: str | None) -> str:
        """This filter's query string (``?...``, or ``""``), with ``changes`` applied."""
        values: dict[str, str | None] = {
            "status": self.status,
            "attention": "1" if self.attention else None,
            "older_than": self.older_than,
            "q": self.q,
            "limit": None if self.limit == DEFAULT_LIMIT else str(self.limit),
            "cursor": self.cursor,
        }
        values.update(changes)
        pairs = [(key, value) for key, value in values.items() if value]
        return "?" + urlencode(pairs) if pairs else ""

    @property
    def active(self) -> bool:
        return any((self.status, self.attention, self.older_than, self.q))
