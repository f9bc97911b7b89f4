"""The services' metric families, read at scrape time (imports ``prometheus_client``).

What the kit counts anyway (:class:`~ordersaga.participant.options.KitStats`) per service, and,
for a service served over HTTP, the commands by action and result and the responses by code
that its app counts. Only processes that serve ``/metrics`` import this module.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client.metrics_core import Metric

from ordersaga.participant.options import KitStats
from ordersaga.telemetry.exposition import counter
from ordersaga.telemetry.histogram import Histogram

__all__ = ["http_families", "kit_batch_sizes", "kit_families"]

_KIT = (
    ("commands", "ordersaga_service_commands_received", "Commands received, valid or not."),
    ("applied", "ordersaga_service_commands_applied", "Commands applied (committed) once."),
    ("commits", "ordersaga_service_commits", "Durable transactions (a group commit is one)."),
    (
        "conflicts",
        "ordersaga_service_optimistic_lock_conflicts",
        "Optimistic-locking races lost (rolled back, re-read and decided again).",
    ),
    (
        "replays",
        "ordersaga_service_idempotent_replays",
        "Repeated idempotency keys answered with the stored reply.",
    ),
    ("invalid", "ordersaga_service_commands_invalid", "Commands refused as malformed."),
)


def kit_families(participants: Mapping[str, object]) -> Iterator[Metric]:
    """The kit's counters of each participant that keeps them, labelled by service."""
    stats = {
        name: found
        for name, participant in participants.items()
        if isinstance(found := getattr(participant, "stats", None), KitStats)
    }
    for field, name, documentation in _KIT:
        values: dict[tuple[str, ...], float] = {
            (service,): float(getattr(s, field)) for service, s in stats.items()
        }
        yield counter(name, documentation, values, ["service"])


def kit_batch_sizes(participants: Mapping[str, object]) -> dict[tuple[str], Histogram]:
    """Each participant's group-commit batch sizes, labelled by service."""
    return {
        (name,): sizes
        for name, participant in participants.items()
        if isinstance(sizes := getattr(participant, "batch_sizes", None), Histogram)
    }


def http_families(
    service: str, commands: Mapping[tuple[str, str], int], codes: Mapping[int, int]
) -> Iterator[Metric]:
    """What a service's HTTP app counted: commands by action and result, responses by code."""
    yield counter(
        "ordersaga_service_commands",
        "Commands answered over HTTP by action and result (the reply status, or unavailable).",
        {(service, action, result): float(n) for (action, result), n in commands.items()},
        ["service", "action", "result"],
    )
    yield counter(
        "ordersaga_service_http_responses",
        "HTTP responses by status code.",
        {(service, str(code)): float(n) for code, n in codes.items()},
        ["service", "code"],
    )
