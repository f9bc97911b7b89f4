"""The saga log a dashboard reads, and how it gets a writable one for an operator action.

:class:`OwnLog` is the ``ordersaga dashboard`` command's: it opens the log read-only when the
app starts (a SQLite file with ``mode=ro``, so it runs beside the ``run`` executing that data
dir; a PostgreSQL log only read) and opens it for writing only for the moment of one repair,
like ``ordersaga sagas retry`` does. :class:`SharedLog` is the order API's (``/ui``): the API's
own open log, read and written through.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from ordersaga.ops.access import log_url, open_log
from ordersaga.saga.store.base import SagaStore

__all__ = ["OwnLog", "SagaLog", "SharedLog", "describe"]


def describe(url: str) -> str:
    """The log's URL for people: a SQLite file's path; a PostgreSQL URL without its password."""
    if url.startswith("sqlite:///"):
        return url.removeprefix("sqlite:///")
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = (f"{parts.username}@" if parts.username else "") + host
    netloc += f":{parts.port}" if parts.port else ""
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class SagaLog(abc.ABC):
    """Where the dashboard reads sagas and applies repairs."""

    #: What the header shows: which log this is (never a password).
    description: str = ""

    @abc.abstractmethod
    async def start(self) -> None:
        """Open what the log needs (the dashboard app's startup)."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Close it again (the app's shutdown)."""

    @abc.abstractmethod
    def reader(self) -> SagaStore:
        """The open log to read."""

    @abc.abstractmethod
    def writer(self) -> AbstractAsyncContextManager[SagaStore]:
        """A log to apply one repair to, for the duration of the block."""


class OwnLog(SagaLog):
    """A data dir's log or one named by URL, opened by the dashboard itself (module doc)."""

    def __init__(self, data_dir: Path, store_url: str | None) -> None:
        self._data_dir = data_dir
        self._store_url = store_url
        self.description = describe(log_url(data_dir, store_url))  # ConfigError: nothing there
        self._store: SagaStore | None = None

    async def start(self) -> None:
        self._store = await open_log(self._data_dir, self._store_url)

    async def stop(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            await store.close()

    def reader(self) -> SagaStore:
        if self._store is None:
            raise RuntimeError("the dashboard has not started")
        return self._store

    @contextlib.asynccontextmanager
    async def _writer(self) -> AsyncIterator[SagaStore]:
        store = await open_log(self._data_dir, self._store_url, write=True)
        try:
            yield store
        finally:
            await store.close()

    def writer(self) -> AbstractAsyncContextManager[SagaStore]:
        return self._writer()


class SharedLog(SagaLog):
    """Another app's open log (the order API's), which that app opens and closes."""

    def __init__(self, store: Callable[[], SagaStore], description: str = "") -> None:
        self._store = store
        self.description = description

    async def start(self) -> None:
        """Nothing: the app that owns the log opens it."""

    async def stop(self) -> None:
        """Nothing: the app that owns the log closes it."""

    def reader(self) -> SagaStore:
        return self._store()

    @contextlib.asynccontextmanager
    async def _writer(self) -> AsyncIterator[SagaStore]:
        yield self._store()

    def writer(self) -> AbstractAsyncContextManager[SagaStore]:
        return self._writer()
