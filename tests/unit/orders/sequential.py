"""A test oracle: the outcome lines a stream must get when processed one order at a time."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from ordersaga.orders.parse import Parsed, Rejected, Skip, Unreadable, parse_line
from ordersaga.orders.world import World
from ordersaga.proving.reference import ReferenceModel


def sequential_outcomes(
    raw_lines: Iterable[bytes], world: World, today: date
) -> list[tuple[int, str | None, str | None]]:
    """(line number, order id, status) per non-skipped line; unreadable lines get (n, None, None).

    Resubmission rules: the same id with the same content gets the first outcome again; with
    other content it fails; a line rejected by the parser fails without touching the model.
    """
    model = ReferenceModel(world, today=today)
    decided: dict[str, tuple[str, str]] = {}
    results: list[tuple[int, str | None, str | None]] = []
    for number, raw in enumerate(raw_lines, start=1):
        result = parse_line(raw)
        if isinstance(result, Skip):
            continue
        if isinstance(result, Unreadable):
            results.append((number, None, None))
            continue
        if isinstance(result, Rejected):
            order_id, digest = result.order_id, result.fingerprint
        else:
            assert isinstance(result, Parsed)
            order_id, digest = result.order.order_id, result.order.fingerprint()
        if order_id in decided:
            first_digest, first_status = decided[order_id]
            status = first_status if first_digest == digest else "failed"
        else:
            confirmed = isinstance(result, Parsed) and model.apply(result.order).confirmed
            status = "confirmed" if confirmed else "failed"
            decided[order_id] = (digest, status)
        results.append((number, order_id, status))
    return results
