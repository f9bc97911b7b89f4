"""The card of a saga is erased in the write that records its decision, and not before: a run
killed just before the decision resumes the payment with the very same call."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from tests.e2e.conftest import ordersaga

LINE = (
    "Order 1, User 456, Items: [{A, 1}], Payment: CreditCard 4111111111111111 12/30,"
    " Address: 1 Main St, Paris, FR\n"
)


def _payment_info(data: Path) -> dict[str, object]:
    with sqlite3.connect(data / "saga.db") as conn:
        (text,) = conn.execute("SELECT input FROM sagas WHERE saga_id = '1'").fetchone()
    info: dict[str, object] = json.loads(text)["payment_info"]
    return info


def test_a_card_is_kept_sealed_until_the_decision_then_erased(tmp_path: Path) -> None:
    data = tmp_path / "data"
    crashed = ordersaga(
        "run", "--data-dir", data, input=LINE, env={"ORDERSAGA_CRASH_AT": "log.before:decision.*"}
    )
    assert crashed.code == 86, crashed.err
    undecided = _payment_info(data)
    assert "sealed" in undecided and undecided["card_last4"] == "1111"
    resumed = ordersaga("run", "--data-dir", data, input=LINE)
    assert resumed.code == 0 and resumed.lines == ["Order 1 confirmed"], resumed.err
    assert _payment_info(data) == {"method": "CreditCard", "card_last4": "1111"}
    assert ordersaga("audit", "--data-dir", data).code == 0
    # The resumed payment call was a repeat of the first (same key, same fingerprint), not a
    # conflict: the payment service applied it once.
    with sqlite3.connect(data / "payment.db") as conn:
        rows = conn.execute("SELECT state FROM payments").fetchall()
    assert rows == [("captured",)]
    # Resubmitting the order after its card was erased is still recognised as the same order.
    again = ordersaga("run", "--data-dir", data, "--json", input=LINE)
    assert json.loads(again.lines[0])["replayed"] is True
