"""Wake-up calls between the processes sharing a PostgreSQL saga log (LISTEN/NOTIFY).

Submitters and workers never depend on a notification: each also polls the log on its own
schedule, so a lost notification (a dropped listening connection, a NOTIFY that failed) only
costs latency. Notifications carry no data; they only say "look again now":

``ordersaga_work``  a saga was created (workers: claim now)
``ordersaga_done``  a saga finished (submitters: read the outcomes you wait for now)

A submitter pokes ``ordersaga_work`` through a :class:`Notifier`; ``ordersaga_done`` is sent by
the workers' write batch that finished the sagas, in its own statement, at its commit
(:meth:`PostgresSagaStore.announce_finished`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import asyncpg

from ordersaga.errors import StorageError, UnavailableError
from ordersaga.saga.store.postgres import PostgresSagaStore

__all__ = ["DONE_CHANNEL", "WORK_CHANNEL", "Notifier", "Wakeup"]

WORK_CHANNEL = "ordersaga_work"
DONE_CHANNEL = "ordersaga_done"


class Wakeup:
    """A connection LISTENing on channels; :attr:`event` is set by each notification.

    The owner clears the event before it looks at the log, then waits on it at most its polling
    interval: a notification that arrives in between is never missed.
    """

    def __init__(self, conn: asyncpg.Connection, channels: Sequence[str]) -> None:
        self.event = asyncio.Event()
        self._conn = conn
        self._channels = tuple(channels)

    @classmethod
    async def open(cls, url: str, channels: Sequence[str]) -> Wakeup:
        try:
            conn = await asyncpg.connect(url)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise UnavailableError(f"postgresql: cannot listen for notifications: {exc}") from exc
        wakeup = cls(conn, channels)
        try:
            for channel in wakeup._channels:
                await conn.add_listener(channel, wakeup._notified)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            await conn.close()
            raise StorageError(f"postgresql: LISTEN failed: {exc}") from exc
        return wakeup

    def _notified(self, *_args: object) -> None:
        self.event.set()

    async def wait(self, at_most: float) -> None:
        """Return at the next notification, or after ``at_most`` seconds; then clear."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.event.wait(), at_most)
        self.event.clear()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._conn.close(timeout=2)


class Notifier:
    """NOTIFY one channel, coalescing bursts into at most one notification in flight.

    :meth:`poke` never blocks and never fails: a burst of pokes while a NOTIFY is on its way
    yields exactly one more NOTIFY after it; a failing NOTIFY is dropped (the listeners poll).
    """

    def __init__(self, store: PostgresSagaStore, channel: str) -> None:
        self._store = store
        self._channel = channel
        self._again = False
        self._task: asyncio.Task[None] | None = None
        self.sent = 0

    def poke(self) -> None:
        if self._task is not None:
            self._again = True
            return
        self._task = asyncio.get_running_loop().create_task(self._send(), name="ordersaga notify")

    async def _send(self) -> None:
        try:
            while True:
                self._again = False
                with contextlib.suppress(StorageError):
                    await self._store.database.fetchone("SELECT pg_notify(?, '')", self._channel)
                    self.sent += 1
                if not self._again:
                    return
        finally:
            self._task = None

    async def close(self) -> None:
        """Let a notification in flight go out."""
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
