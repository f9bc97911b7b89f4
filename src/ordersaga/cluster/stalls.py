"""Sagas a worker cannot progress go back to the pool (an outage is not a reason to hold them).

A saga whose call waits for a service this worker cannot reach (the call's breaker is open, or
its last attempt could not connect: :attr:`ordersaga.saga.calls.Caller.stalled`) is not
renewed like the others: its lease is set to end now, while the worker keeps ownership and
keeps waiting. So:

* a worker that reaches the service claims it at once (the lease has lapsed), drives it, and
  this worker's next renewal finds it no longer held and stops its task (a late write of ours
  is refused by the lease fencing anyway, see :mod:`ordersaga.cluster.worker`);
* when no worker reaches the service either, nobody claims it and this worker finishes it when
  the service answers again (its writes still carry the owner it holds), or fails it once the
  order's deadline has passed — the outage alone never fails an order before that.

A saga that answers again is renewed normally at the next renewal.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["StallWatch"]


class StallWatch:
    """Which running sagas are stalled by an outage; says so once per saga and episode."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self._log = log
        self._said: set[str] = set()
        self.let_go = 0  # leases left to lapse because the saga waited for an outage

    def split(
        self, tasks: Mapping[str, asyncio.Task[None]], stalled: Mapping[asyncio.Task[Any], str]
    ) -> tuple[list[str], list[str]]:
        """``(progressing, stalled)`` saga ids among ``tasks``."""
        if not stalled:
            self._said.clear()
            return list(tasks), []
        moving: list[str] = []
        waiting: list[str] = []
        services: set[str] = set()
        for saga_id, task in tasks.items():
            service = stalled.get(task)
            if service is None:
                moving.append(saga_id)
            else:
                waiting.append(saga_id)
                services.add(service)
        new = [saga_id for saga_id in waiting if saga_id not in self._said]
        if new:
            self.let_go += len(new)
            names = ", ".join(sorted(services))
            self._log(
                f"{len(new)} more sagas wait for a service unreachable from here ({names}):"
                f" their leases are left to lapse for a worker that reaches it (e.g. {new[0]})"
            )
        self._said = set(waiting)
        return moving, waiting
