"""What `ordersaga bench` runs: its options and the generated workload (see
:mod:`ordersaga.proving.bench`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

from ordersaga.errors import ConfigError
from ordersaga.orders.world import World
from ordersaga.proving.cpucap import MIN_CORES
from ordersaga.proving.generate import Kind, Mix, bench_world, generate_workload

__all__ = ["DURABILITY_MODES", "BenchOptions"]

DURABILITY_MODES = ("durable", "none", "compare")


#: Compensations an order of each kind needs when it fails as meant (the steps before the
#: refusing one); every other kind fails, if at all, at the first step.
_COMPENSATIONS = {
    Kind.UNSERVED_COUNTRY: 1,
    Kind.OVER_WEIGHT: 1,
    Kind.DECLINED_CARD: 2,
    Kind.EXPIRED_CARD: 2,
    Kind.UNKNOWN_METHOD: 2,
    Kind.OVER_LIMIT: 2,
}


HOT_ITEM = "HOT"


@dataclass(frozen=True, slots=True)
class BenchOptions:
    """What to run. Shares are of all orders; ``contention`` orders ask for the hot item."""

    orders: int = 20_000
    concurrency: tuple[int, ...] = (64,)
    fault_rate: float = 0.0
    seed: int = 1
    items: int = 20
    contention: float = 0.0
    hot_stock: int | None = None  # None: the hot item never runs out (contention only)
    fail_reserve: float = 0.0
    fail_ship: float = 0.0
    fail_pay: float = 0.0
    store: str | None = None  # None: SQLite in the data dir; a postgresql:// server URL
    durability: str = "durable"
    stream: bool = False
    rss_every: int = 0  # with stream: sample RSS every N orders (0: a tenth of the run)
    ordered: bool = True
    tmp_dir: Path | None = None  # where the fresh data dirs go (default: the system's)
    keep: bool = False  # keep the data dirs (their paths are in the labels)
    http: bool = False  # also: the services as `ordersaga serve` processes, over HTTP
    workers: tuple[int, ...] = ()  # also: per N, N worker processes (needs a PostgreSQL store)
    #: With workers: cap each worker process at this many cores (cgroup cpu; None: uncapped).
    worker_cpu: float | None = None
    fsync_samples: int = 100  # the disk's fsync probe for the report header (0: none)

    def __post_init__(self) -> None:
        if self.durability not in DURABILITY_MODES:
            raise ConfigError(f"durability must be one of {', '.join(DURABILITY_MODES)}")
        if self.store is not None and not self.store.startswith(("postgresql://", "postgres://")):
            raise ConfigError("--store takes a postgresql:// server URL (SQLite is the default)")
        if self.workers and self.store is None:
            raise ConfigError("--workers needs --store postgresql://SERVER (the shared saga log)")
        if self.worker_cpu is not None and not self.workers:
            raise ConfigError("--worker-cpu caps the worker processes: it needs --workers")
        if self.worker_cpu is not None and not self.worker_cpu >= MIN_CORES:
            raise ConfigError(f"--worker-cpu: a cap is at least {MIN_CORES:g} core")
        if (self.http or self.workers) and self.durability != "durable":
            raise ConfigError("--http and --workers measure the durable setup only")
        shares = (self.contention, self.fail_reserve, self.fail_ship, self.fail_pay)
        if not all(0.0 <= s <= 1.0 for s in shares) or sum(shares[1:]) > 1.0:
            raise ConfigError("shares must lie in [0, 1], the failure shares summing to at most 1")

    def world(self) -> World:
        hot = None
        if self.contention > 0:
            hot = self.hot_stock if self.hot_stock is not None else 10**9
        return bench_world(items=self.items, hot_stock=hot, hot_item=HOT_ITEM)

    def mix(self) -> Mix:
        return Mix.clean(
            fail_reserve=self.fail_reserve, fail_ship=self.fail_ship, fail_pay=self.fail_pay
        )


class Workload:
    """The generated lines, once (iterable again) or streamed; counts expected compensations."""

    def __init__(self, options: BenchOptions, world: World) -> None:
        self._options = options
        self._world = world
        self._lines: list[bytes] | None = None
        self._expected = 0
        self._fixed_expected = 0
        if not options.stream:
            self._lines = list(self._generate())
            self._fixed_expected = self._expected

    def _generate(self) -> Iterator[bytes]:
        options = self._options
        self._expected = 0
        workload = generate_workload(
            options.orders,
            seed=options.seed,
            world=self._world,
            mix=options.mix(),
            hot_items=(HOT_ITEM,) if options.contention > 0 else (),
            hot_share=options.contention,
        )
        for generated in workload:
            if generated.expected == "failed":
                self._expected += _COMPENSATIONS.get(generated.kind, 0)
            yield generated.line.encode()

    @property
    def expected_compensations(self) -> int:
        return self._fixed_expected if self._lines is not None else self._expected

    async def numbered(self) -> AsyncIterator[tuple[int, bytes | None]]:
        lines = self._lines if self._lines is not None else self._generate()
        for lineno, line in enumerate(lines, 1):
            yield lineno, line
