"""A live progress line on stderr when it is a terminal (rich)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from rich.console import Console
from rich.live import Live
from rich.text import Text

from ordersaga.local.pipeline import Counts


def _render(counts: Counts, started: float) -> Text:
    done = counts.confirmed + counts.failed
    elapsed = max(time.monotonic() - started, 1e-9)
    return Text.assemble(
        ("ordersaga ", "bold"),
        (f"{done} done", "cyan"),
        " · ",
        (f"{counts.confirmed} confirmed", "green"),
        " · ",
        (f"{counts.failed} failed", "red"),
        f" · {counts.in_flight} in flight · {counts.retries} retries"
        f" · {counts.compensations} compensations · {done / elapsed:.0f} orders/s",
    )


@contextlib.asynccontextmanager
async def live_progress(counts: Counts, enabled: bool) -> AsyncIterator[None]:
    if not enabled:
        yield
        return
    console = Console(stderr=True)
    started = time.monotonic()
    # Lines written to sys.stderr meanwhile are printed above the live line (redirect_stderr);
    # stdout is left alone: it carries the outcome lines.
    live = Live(
        _render(counts, started),
        console=console,
        transient=True,
        redirect_stdout=False,
        redirect_stderr=True,
    )
    with live:

        async def tick() -> None:
            while True:
                await asyncio.sleep(0.2)
                live.update(_render(counts, started))

        task = asyncio.create_task(tick())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
