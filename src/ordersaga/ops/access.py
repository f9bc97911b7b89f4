"""Opening the saga log an operator command names: ``--store URL`` or the data dir's file.

Inspection opens it read-only (a SQLite file with ``mode=ro``; PostgreSQL only reads), so it runs
while a ``run`` or workers execute, and it never creates anything: a data dir that was never
initialised, or a saga log file that is missing, is refused with its name. Repairs open it for
writing but likewise refuse a log that does not exist yet.

A short inspection of a data dir (:func:`reading_log`: ``sagas list``, ``sagas show``) holds the
data dir's lock shared while nobody executes it, as ``audit`` does: no executor starts
meanwhile, so the file is opened ``immutable`` and not even a ``-wal``/``-shm`` file is left
beside it. While an executor runs, it reads beside it (the executor owns those files).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, nullcontext
from pathlib import Path

from ordersaga.errors import ConfigError
from ordersaga.local.datadir import DataDir
from ordersaga.local.lock import shared_if_idle
from ordersaga.saga.store import open_store
from ordersaga.saga.store.base import SagaStore

__all__ = ["log_url", "open_log", "reading_log"]


def log_url(data_dir: Path, store_url: str | None) -> str:
    """The saga log's URL; ConfigError when it names nothing that exists."""
    if store_url is not None:
        if store_url.startswith("memory:"):
            raise ConfigError("a memory:// saga log lives only inside its run: nothing to inspect")
        if store_url.startswith(("postgresql://", "postgres://")):
            return store_url
        path = Path(store_url.removeprefix("sqlite:///"))
        if not path.is_file():
            raise ConfigError(f"no saga log at {path}")
        return store_url
    layout = DataDir(data_dir)
    if not layout.exists():
        raise ConfigError(f"{data_dir} is not an ordersaga data dir (no {layout.meta_path.name})")
    url = layout.locations().store_url
    path = Path(url.removeprefix("sqlite:///"))
    if not path.is_file():
        raise ConfigError(f"data dir {data_dir} has no saga log ({path} is missing)")
    return url


async def open_log(data_dir: Path, store_url: str | None, *, write: bool = False) -> SagaStore:
    """The saga log, read-only unless ``write`` (see the module doc)."""
    return await open_store(log_url(data_dir, store_url), read_only=not write)


@asynccontextmanager
async def reading_log(data_dir: Path, store_url: str | None) -> AsyncIterator[SagaStore]:
    """The saga log, read-only, for a short inspection (see the module doc)."""
    url = log_url(data_dir, store_url)
    lock = shared_if_idle(data_dir) if store_url is None else nullcontext(True)
    with lock as executing:
        store = await open_store(url, read_only=True, quiescent=not executing)
        try:
            yield store
        finally:
            await store.close()
