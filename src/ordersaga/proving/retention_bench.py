"""A measurement, not a test: does retention keep a data dir bounded without slowing runs down?

    python -m ordersaga.proving.retention_bench [--orders 200000] [--batches 4]
        [--concurrency 64] [--data-dir DIR] [--keep]

Runs ``--orders`` orders in ``--batches`` equal batches through the real pipeline on one SQLite
data dir (the bench world, fresh ids per batch), and after each batch a prune of everything
finished (``--older-than 0s``). Each prune runs as if the batch were older than the message-age
limit plus its margin (its clock is set that far ahead), as when one batch is one day's orders:
so the services' rows go too, not only the log's. Prints, per batch, its throughput and the
data dir's size before and after the prune, then the bound: bytes per retained order (what is
kept forever is one compact record per order in the saga log).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from ordersaga.local.pipeline import Pipeline
from ordersaga.local.retention import PruneSettings, prune_locations
from ordersaga.local.runtime import RuntimeSettings, open_runtime
from ordersaga.protocol.messages import MAX_MESSAGE_AGE, MESSAGE_AGE_MARGIN
from ordersaga.proving.benchmeasure import BenchSink
from ordersaga.proving.generate import bench_world, generate_workload
from ordersaga.proving.workload import Mix


@dataclass(frozen=True, slots=True)
class Batch:
    index: int
    orders: int
    orders_per_s: float
    bytes_before_prune: int
    bytes_after_prune: int
    retained_orders: int
    prune_seconds: float

    @property
    def bytes_per_order(self) -> float:
        return self.bytes_after_prune / self.retained_orders


async def run_batch(data_dir: Path, index: int, orders: int, concurrency: int) -> float:
    """One batch through the pipeline, as ``run`` would; its orders per second."""
    world = bench_world()
    lines = [
        g.line.encode()
        for g in generate_workload(
            orders, seed=index, world=world, mix=Mix.clean(), id_prefix=f"b{index}-"
        )
    ]

    async def numbered() -> AsyncIterator[tuple[int, bytes | None]]:
        for lineno, line in enumerate(lines, 1):
            yield lineno, line

    runtime = await open_runtime(RuntimeSettings(data_dir=data_dir, world=world))
    try:
        pipeline = Pipeline(runtime.engine, BenchSink(0), runtime.vault, concurrency, True)
        started = time.perf_counter()
        counts = await pipeline.run(numbered())
        elapsed = time.perf_counter() - started
        await runtime.transport.drain()
    finally:
        await runtime.close()
    return counts.requests / elapsed


async def measure(
    data_dir: Path, orders: int, batches: int, concurrency: int, say: object
) -> list[Batch]:
    assert callable(say)
    per_batch = orders // batches
    ahead = MAX_MESSAGE_AGE + MESSAGE_AGE_MARGIN + 1
    results: list[Batch] = []
    for index in range(1, batches + 1):
        rate = await run_batch(data_dir, index, per_batch, concurrency)
        started = time.perf_counter()
        report = await prune_locations(
            data_dir, PruneSettings(older_than=0), now=time.time() + ahead
        )
        took = time.perf_counter() - started
        assert report.bytes_before is not None and report.bytes_after is not None
        batch = Batch(
            index,
            per_batch,
            rate,
            report.bytes_before,
            report.bytes_after,
            per_batch * index,
            took,
        )
        say(
            f"batch {index}: {batch.orders} orders at {rate:.0f} orders/s; data dir"
            f" {batch.bytes_before_prune / 1e6:.1f} MB -> {batch.bytes_after_prune / 1e6:.1f} MB"
            f" after the prune ({took:.1f} s), {batch.bytes_per_order:.0f} bytes per retained"
            f" order ({batch.retained_orders} orders)"
        )
        results.append(batch)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ordersaga.proving.retention_bench")
    parser.add_argument("--orders", type=int, default=200_000)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="ordersaga-retention-")) / "data"

    def say(message: str) -> None:
        sys.stderr.write(message + "\n")
        sys.stderr.flush()

    try:
        results = asyncio.run(measure(data_dir, args.orders, args.batches, args.concurrency, say))
    finally:
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)
    first, last = results[0], results[-1]
    print(
        f"retention: {args.orders} orders in {args.batches} batches, a prune after each;"
        f" bound {max(b.bytes_per_order for b in results):.0f} bytes per retained order"
        f" (last {last.bytes_per_order:.0f}); batch {last.index} ran at"
        f" {last.orders_per_s / first.orders_per_s:.1%} of batch 1's throughput"
        f" ({last.orders_per_s:.0f} vs {first.orders_per_s:.0f} orders/s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
