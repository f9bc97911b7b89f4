"""The data dir: where each service's own database and the saga log live.

Layout (the embedded default)::

    DIR/ordersaga.json   what this data dir was initialised with (format, world)
    DIR/saga.db          the saga log
    DIR/inventory.db     the inventory service's database
    DIR/shipping.db      the shipping service's database
    DIR/payment.db       the payment service's database

A new data dir is initialised from the world; an existing one is continued, never reset: its
databases hold the state, and a different ``--world`` is ignored with a warning.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ordersaga.errors import ConfigError

META_FILE = "ordersaga.json"
FORMAT = 1
SERVICE_NAMES = ("inventory", "shipping", "payment")


@dataclass(frozen=True, slots=True)
class Locations:
    """Where the saga log and each service's database are (URLs)."""

    store_url: str
    service_urls: dict[str, str]


@dataclass(frozen=True, slots=True)
class DataDir:
    root: Path

    @property
    def meta_path(self) -> Path:
        return self.root / META_FILE

    def locations(self) -> Locations:
        return Locations(
            f"sqlite:///{self.root / 'saga.db'}",
            {name: f"sqlite:///{self.root / f'{name}.db'}" for name in SERVICE_NAMES},
        )

    def exists(self) -> bool:
        return self.meta_path.exists()

    def prepare(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create data dir {self.root}: {exc.strerror}") from exc
        if not os.access(self.root, os.W_OK):
            raise ConfigError(f"data dir {self.root} is not writable")

    def read_meta(self) -> dict[str, Any]:
        try:
            data = json.loads(self.meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"data dir {self.root}: unreadable {META_FILE}: {exc}") from exc
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ConfigError(f"data dir {self.root}: not an ordersaga data dir of format {FORMAT}")
        return data

    def write_meta(self, world: dict[str, Any]) -> None:
        """Mark the data dir initialised (atomically: written aside, fsynced, renamed)."""
        tmp = self.meta_path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as f:
            json.dump({"format": FORMAT, "world": world}, f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.meta_path)
