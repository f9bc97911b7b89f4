"""The web dashboard (``ordersaga dashboard``, and ``/ui`` of ``ordersaga serve api``).

``app``       the ASGI app: pages, their JSON, operator actions, ``/metrics``
``pages``     the reading side (overview, list, one saga) and ``actions`` the changing side
``auth``      the operator token, its sessions, the same-origin rule for changes
``log``       the saga log it reads: its own (read-only) or the order API's
``overview``  the overview's numbers; ``timeline`` a saga's Gantt-like chart; ``filters``
              the list's query string; ``metrics`` its Prometheus families

Server-rendered Jinja2 templates, a little plain JavaScript and inline SVG: every asset is a
file of this package, so the dashboard works on a machine without internet. It sits above the
operator views (:mod:`ordersaga.ops`) and below the cluster (whose order API mounts it).
"""

from ordersaga.dashboard.app import DashboardSettings, create_dashboard
from ordersaga.dashboard.log import OwnLog, SagaLog, SharedLog

__all__ = ["DashboardSettings", "OwnLog", "SagaLog", "SharedLog", "create_dashboard"]
