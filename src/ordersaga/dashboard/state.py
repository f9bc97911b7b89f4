"""One dashboard app's settings and state (per app, never global)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.templating import Jinja2Templates

from ordersaga.dashboard.auth import Operators
from ordersaga.dashboard.log import SagaLog
from ordersaga.dashboard.metrics import DashboardCounts
from ordersaga.dashboard.throttle import SignInThrottle

__all__ = ["Dashboard", "DashboardSettings"]


@dataclass(frozen=True, slots=True)
class DashboardSettings:
    """How a dashboard behaves (read once, at the edge)."""

    #: The operator token; None: read-only (no operator action is possible).
    token: str | None = None
    #: Every page and JSON read needs the operator signed in (see :mod:`.signin`); needs a token.
    private: bool = False
    #: Seconds between two refreshes of the overview in the browser.
    refresh_seconds: float = 3.0
    #: Wall-clock time (ages, the overview's last half hour).
    clock: Callable[[], float] = field(default=time.time)

    def __post_init__(self) -> None:
        if self.token is not None and not self.token.strip():
            raise ValueError("the operator token must not be blank")
        if self.private and self.token is None:
            raise ValueError("a private dashboard needs an operator token")
        if not self.refresh_seconds > 0:
            raise ValueError("refresh_seconds must be positive")


@dataclass(slots=True)
class Dashboard:
    """One dashboard app's state (per app, never global)."""

    log: SagaLog
    settings: DashboardSettings
    operators: Operators
    templates: Jinja2Templates
    counts: DashboardCounts = field(default_factory=DashboardCounts)
    sign_ins: SignInThrottle = field(default_factory=SignInThrottle)
