"""A saga's timeline as a Gantt-like chart: one bar per step record, drawn as inline SVG.

The log keeps one record per step and phase (action, compensate, confirm) with the time its
first attempt started, the time its last attempt ended and how many attempts it took; a bar
spans that interval and says how many attempts it holds (the log has no time per attempt).
Operator actions are vertical marks at the time they were recorded. This module computes the
geometry only (pure, tested without a browser); the template draws it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ordersaga.orders.cards import mask_card
from ordersaga.orders.order_saga import STEP_SERVICES
from ordersaga.saga.store.base import StepRecord
from ordersaga.saga.store.operator import SagaEntry

__all__ = ["Bar", "Chart", "Mark", "chart"]

WIDTH = 760.0  # the plot, in SVG user units (the SVG scales to the page)
LABEL = 240.0  # the label column left of the plot
ROW = 26.0
TOP = 8.0
AXIS = 30.0  # below the bars: the time axis
_MIN_BAR = 3.0  # a call of a few microseconds still shows


@dataclass(frozen=True, slots=True)
class Bar:
    """One step record: where its bar lies and what its tooltip says."""

    label: str
    phase: str  # action | compensate | confirm
    result: str  # succeeded | refused | unknown
    attempts: int
    x: float
    y: float
    width: float
    start_ms: float  # since the saga was created
    duration_ms: float
    reason: str | None


@dataclass(frozen=True, slots=True)
class Mark:
    """An operator action at ``x``."""

    x: float
    label: str


@dataclass(frozen=True, slots=True)
class Chart:
    bars: tuple[Bar, ...]
    marks: tuple[Mark, ...]
    ticks: tuple[tuple[float, str], ...]  # (x, "12 ms")
    span_ms: float
    width: float
    height: float
    label_width: float
    plot_right: float
    plot_bottom: float


def _label(step: StepRecord) -> str:
    service = STEP_SERVICES.get(step.step)
    where = f" · {service}" if service else ""
    phase = "" if step.phase.value == "action" else f" ({step.phase.value})"
    return f"{step.step}{phase}{where}"


def _tick_text(ms: float) -> str:
    if ms >= 60_000:
        return f"{ms / 60_000:.1f} min"
    if ms >= 1000:
        return f"{ms / 1000:.2f} s"
    return f"{ms:.0f} ms" if ms >= 10 else f"{ms:.1f} ms"


def chart(entry: SagaEntry) -> Chart:
    """The chart of ``entry``'s steps (in the log's order) and operator actions."""
    record = entry.record
    steps = [s for s in record.steps if s.started_at]
    origin = min((t for t in (record.created_at, *(s.started_at for s in steps)) if t), default=0.0)
    ends = [s.ended_at for s in steps] + [a.at for a in entry.actions] + [record.updated_at]
    span = max(1e-3, max(ends) - origin)
    scale = WIDTH / span
    bars = []
    for row, step in enumerate(steps):
        start = step.started_at - origin
        duration = max(0.0, step.ended_at - step.started_at)
        bars.append(
            Bar(
                label=_label(step),
                phase=step.phase.value,
                result=step.status.value,
                attempts=step.attempts,
                x=round(LABEL + start * scale, 2),
                y=TOP + row * ROW,
                width=round(max(_MIN_BAR, duration * scale), 2),
                start_ms=round(start * 1000, 3),
                duration_ms=round(duration * 1000, 3),
                reason=None if step.reason is None else mask_card(step.reason),
            )
        )
    marks = tuple(
        Mark(round(LABEL + max(0.0, a.at - origin) * scale, 2), f"{a.action} by {a.who}")
        for a in entry.actions
        if a.at
    )
    bottom = TOP + max(1, len(bars)) * ROW
    ticks = tuple(
        (round(LABEL + WIDTH * i / 4, 2), _tick_text(span * 1000 * i / 4)) for i in range(5)
    )
    return Chart(
        bars=tuple(bars),
        marks=marks,
        ticks=ticks,
        span_ms=round(span * 1000, 3),
        width=LABEL + WIDTH + 130,  # room for the result beside the last bar
        height=bottom + AXIS,
        label_width=LABEL,
        plot_right=LABEL + WIDTH,
        plot_bottom=bottom,
    )
