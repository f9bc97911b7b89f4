"""Structured logs: ``--log-format json`` makes every log line one JSON object.

Human text stays the default. In JSON mode the root logger writes each record as one object on
one line::

    {"ts": "2026-01-02T03:04:05.678Z", "level": "info", "logger": "ordersaga.events",
     "event": "step", "order_id": "1001", "step": "reserve", "phase": "action",
     "attempt": 1, "status": "succeeded", "worker": "host:123:ab12"}

An *event* is a record logged through :func:`emit`: its name goes to ``event`` and its fields
become keys of the object. Any other record (uvicorn's, a warning) gets ``"event": "log"`` and its
text under ``message``. The formatter never raises: a value JSON cannot hold is written as text.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import Any, TextIO

__all__ = ["EVENTS", "LOG_FORMATS", "JsonFormatter", "configure_logging", "emit"]

LOG_FORMATS = ("text", "json")
#: The logger every event goes through (see :func:`emit`).
EVENTS = logging.getLogger("ordersaga.events")
_FIELDS = "ordersaga_fields"
_EVENT = "ordersaga_event"


def emit(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log ``event`` with ``fields`` (keys of the JSON object; ``key=value`` pairs in text)."""
    if logger.isEnabledFor(level):
        text = " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
        logger.log(level, "%s %s", event, text, extra={_EVENT: event, _FIELDS: fields})


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module doc)."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = dt.datetime.fromtimestamp(record.created, tz=dt.UTC)
        data: dict[str, Any] = {
            "ts": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        event = getattr(record, _EVENT, None)
        if event is None:
            data["event"] = "log"
            data["message"] = record.getMessage()
        else:
            data["event"] = event
            for key, value in getattr(record, _FIELDS, {}).items():
                if value is not None and key not in data:
                    data[key] = value
        if record.exc_info:
            data["error"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(data, default=str, ensure_ascii=False)


def configure_logging(
    log_format: str, stream: TextIO | None = None, level: int = logging.INFO
) -> None:
    """Route every log record to ``stream`` (stderr) in ``log_format``: ``text`` or ``json``.

    Called once by a long-running command at its start. In ``text`` mode nothing changes: the
    commands print their human messages as before and events stay off (no cost at all).
    """
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}")
    if log_format == "text":
        return
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    EVENTS.setLevel(logging.INFO)
