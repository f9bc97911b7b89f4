"""What `ordersaga chaos` plans before anything runs, all of it from ``--seed``: its options, the
chaos dir, the workload and its world, and the kill plan (see :mod:`ordersaga.proving.chaos`).
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

from ordersaga.errors import ConfigError
from ordersaga.orders.demo import demo_world
from ordersaga.orders.world import World, parse_world
from ordersaga.proving.generate import GeneratedLine, Mix, generate_workload

MARKER = "chaos.json"


#: Every kind of line, and resubmissions of both sorts on top of the default mix.
CHAOS_MIX = Mix(resubmit_same=0.02, resubmit_different=0.01)


HOT_ITEMS = ("GPU", "CONSOLE")


HOT_SHARE = 0.05


#: How a kill is aimed: (mode, weight). See :class:`KillPlan`.
KILL_MODES = (("startup", 0.15), ("recovery", 0.25), ("running", 0.60))


@dataclass(frozen=True, slots=True)
class ChaosOptions:
    orders: int = 10_000
    fault_rate: float = 0.2
    kills: int = 20
    seed: int = 1
    concurrency: int = 32
    data_dir: Path = Path("./chaos-data")
    keep: bool = False
    #: A run whose output and counters stay unchanged this long is reported as hung and killed.
    stall_timeout: float = 300.0
    #: After every N-th kill, `ordersaga prune --older-than 0s` runs alongside the next run
    #: (while it starts and recovers); 0: never.
    prune_every: int = 0

    def __post_init__(self) -> None:
        if self.orders < 1 or self.concurrency < 1 or self.kills < 0 or self.prune_every < 0:
            raise ConfigError("chaos: --orders and --concurrency must be >= 1, --kills >= 0")
        if not 0.0 <= self.fault_rate <= 1.0:
            raise ConfigError("chaos: --fault-rate must be within [0, 1]")


@dataclass(frozen=True, slots=True)
class KillPlan:
    """Where one kill is aimed.

    ``startup``: ``delay`` seconds after the spawn (the interpreter starting, the databases
    opening, recovery, the first outcomes). ``recovery``: ``delay`` seconds after the run
    reports it is recovering. ``running``: ``delay`` seconds after the run printed ``share``
    times an even share of the outcome lines still undecided (an even share: those lines
    divided by the running kills left plus one), so the kills spread over the whole stream.
    """

    mode: str
    delay: float
    share: float = 0.0


def chaos_world(orders: int) -> World:
    """The demo world with every stock scaled to the workload (C stays out of stock)."""
    data = demo_world().to_json()
    scale = max(1, orders // 1000)
    for spec in data["items"].values():
        spec["stock"] *= scale
    return parse_world(data, source="chaos world")


def prepare_chaos_dir(root: Path) -> None:
    """Empty ``root`` for a new soak: only a chaos dir (or an empty dir) may be wiped."""
    if root.exists():
        if not root.is_dir():
            raise ConfigError(f"chaos: {root} exists and is not a directory")
        if (root / MARKER).is_file():
            shutil.rmtree(root)
        elif any(root.iterdir()):
            raise ConfigError(
                f"chaos: {root} exists and is not a chaos dir (no {MARKER}); refusing to wipe it"
                " - pass another --data-dir"
            )
    try:
        (root / "runs").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"chaos: cannot create {root}: {exc.strerror}") from exc


def write_workload(root: Path, options: ChaosOptions) -> list[GeneratedLine]:
    world = chaos_world(options.orders)
    (root / "world.json").write_text(json.dumps(world.to_json(), indent=2) + "\n", "utf-8")
    workload = list(
        generate_workload(
            options.orders,
            seed=options.seed,
            world=world,
            mix=CHAOS_MIX,
            hot_items=HOT_ITEMS,
            hot_share=HOT_SHARE,
        )
    )
    with (root / "orders.txt").open("w", encoding="utf-8") as f:
        for generated in workload:
            f.write(generated.line + "\n")
    return workload


def kill_plans(options: ChaosOptions) -> list[KillPlan]:
    """The seeded kill plan (see :class:`KillPlan`)."""
    rng = random.Random(f"ordersaga-chaos-kills-{options.seed}")
    modes = [m for m, _ in KILL_MODES]
    weights = [w for _, w in KILL_MODES]
    plans = []
    for _ in range(options.kills):
        mode = rng.choices(modes, weights)[0]
        if mode == "startup":
            plans.append(KillPlan(mode, rng.uniform(0.0, 0.6)))
        elif mode == "recovery":
            plans.append(KillPlan(mode, rng.uniform(0.0, 0.01)))
        else:
            plans.append(KillPlan(mode, rng.uniform(0.0, 0.05), rng.uniform(0.0, 2.0)))
    return plans
