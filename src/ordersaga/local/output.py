"""Printing outcomes (stdout) and diagnostics, progress and the summary (stderr)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TextIO

from ordersaga.local.pipeline import Counts, Outcome


@dataclass(slots=True)
class StreamSink:
    """Outcome lines on ``out`` (text or JSON), diagnostics on ``err``."""

    out: TextIO
    err: TextIO
    json_lines: bool = False
    verbose: bool = False

    def outcome(self, outcome: Outcome) -> None:
        if self.json_lines:
            record = {
                "order_id": outcome.order_id,
                "status": outcome.status,
                "reason": outcome.reason,
                "step": outcome.step,
                "cause": outcome.cause,
                "retries": outcome.retries,
                "compensations": outcome.compensations,
                "replayed": outcome.replayed,
            }
            self.out.write(json.dumps(record, ensure_ascii=False) + "\n")
        else:
            self.out.write(f"Order {outcome.order_id} {outcome.status}\n")
        if self.verbose and not outcome.confirmed:
            self.err.write(f"line {outcome.lineno}: order {outcome.order_id}: {outcome.reason}\n")

    def unreadable(self, lineno: int, reason: str) -> None:
        self.err.write(f"line {lineno}: unreadable, skipped: {reason}\n")

    def rejected(self, lineno: int, order_id: str, reason: str) -> None:
        self.err.write(f"line {lineno}: order {order_id} rejected: {reason}\n")

    def flush(self) -> None:
        self.out.flush()


def summary_lines(
    counts: Counts, elapsed: float, faults: dict[str, int] | None, late_refused: int | None
) -> list[str]:
    orders = counts.requests
    rate = orders / elapsed if elapsed > 0 else 0.0

    def per(n: int) -> str:
        return f"{n / orders:.3f}/order" if orders else "-"

    lines = [
        f"orders {orders}: {counts.confirmed} confirmed, {counts.failed} failed"
        f" ({counts.rejected} invalid, {counts.replayed} replayed, {counts.mismatched} id reused)",
        f"retries {counts.retries} ({per(counts.retries)}),"
        f" compensations {counts.compensations} ({per(counts.compensations)})",
    ]
    if counts.unreadable:
        lines.append(f"unreadable lines {counts.unreadable}")
    if counts.resumed:
        lines.append(f"resumed {counts.resumed} unfinished sagas from the log")
    if faults is not None:
        text = ", ".join(f"{name} {n}" for name, n in faults.items())
        lines.append(
            f"faults injected: {text}; late deliveries refused by tombstones {late_refused or 0}"
        )
    lines.append(f"elapsed {elapsed:.2f} s, {rate:.0f} orders/s")
    return ["ordersaga: " + line for line in lines]
