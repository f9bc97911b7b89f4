"""`ordersaga run`: recover unfinished sagas, then process a stream of order requests."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from ordersaga.errors import ExecutorFenced
from ordersaga.local.output import StreamSink, summary_lines
from ordersaga.local.pipeline import Counts, Pipeline, read_lines
from ordersaga.local.progress import live_progress
from ordersaga.local.runtime import RuntimeSettings, open_runtime
from ordersaga.local.stats import RunStats
from ordersaga.orders.parse import MAX_LINE_BYTES
from ordersaga.saga.recovery import recover
from ordersaga.saga.store.base import SagaStore
from ordersaga.saga.store.fencing import ExecutorRight


@dataclass(frozen=True, slots=True)
class RunOptions:
    runtime: RuntimeSettings
    concurrency: int = 32
    ordered: bool = True
    json_lines: bool = False
    verbose: bool = False
    progress: bool = False
    stats_file: Path | None = None  # live counters for a watching process (see app.stats)


@dataclass(frozen=True, slots=True)
class RunReport:
    counts: Counts
    elapsed: float
    faults: dict[str, int] | None
    late_refused: int | None

    def lines(self) -> list[str]:
        return summary_lines(self.counts, self.elapsed, self.faults, self.late_refused)


async def run_orders(
    options: RunOptions,
    lines: AsyncIterator[tuple[int, bytes | None]],
    out: TextIO,
    err: TextIO,
) -> RunReport:
    def warn(message: str) -> None:
        err.write(f"ordersaga: warning: {message}\n")

    started = time.monotonic()
    stats = RunStats(options.stats_file)
    stats.enter("opening")
    runtime = await open_runtime(options.runtime, warn)
    try:
        sink = StreamSink(out, err, options.json_lines, options.verbose)
        pipeline = Pipeline(
            runtime.engine, sink, runtime.vault, options.concurrency, options.ordered
        )
        stats.attach(runtime, pipeline.counts)
        participants = runtime.services.by_name() if runtime.services is not None else None
        async with (
            live_progress(pipeline.counts, options.progress),
            stats.periodic(),
            runtime.telemetry.serving(runtime.engine, participants) as metrics_url,
        ):
            if metrics_url is not None:
                err.write(f"ordersaga: serving metrics at {metrics_url}\n")
            # Every unfinished saga is finished before any new request is admitted.
            stats.enter("recovering")
            resumed = await recover(runtime.engine, concurrency=options.concurrency)
            pipeline.counts.resumed = len(resumed)
            stats.enter("running")
            counts = await pipeline.run(lines)
            stats.enter("draining")
            await runtime.transport.drain()  # late deliveries land before the run ends
    except Exception as exc:
        stats.enter("aborted")
        lost = await lost_right(runtime.store)
        if lost is not None and not isinstance(exc.__cause__, ExecutorFenced):
            raise ExecutorFenced(lost) from exc  # the failure was the right going away
        raise
    except BaseException:
        stats.enter("aborted")
        raise
    finally:
        await runtime.close()
    stats.enter("done")
    injector = runtime.injector
    return RunReport(
        counts,
        time.monotonic() - started,
        dict(injector.counts) if injector else None,
        injector.late_tombstoned if injector else None,
    )


async def lost_right(store: SagaStore) -> str | None:
    """Why this process lost its right to execute ``store``'s log, if it did (PostgreSQL)."""
    right = getattr(store, "executor_right", None)
    if isinstance(right, ExecutorRight) and await right.confirm_lost():
        return right.lost
    return None


def lines_from(stream: object) -> AsyncIterator[tuple[int, bytes | None]]:
    """Numbered lines from a binary file object (a pipe, a file, standard input)."""
    raw = getattr(stream, "raw", stream)
    read = getattr(raw, "read")  # noqa: B009 - any object with a blocking read(n)
    return read_lines(read, max_line=MAX_LINE_BYTES + 2)
