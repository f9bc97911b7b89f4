"""Pipelined PostgreSQL write transactions, for the participants' batches (libpq's pipeline mode).

asyncpg waits for each statement's result before it sends the next (it cannot pipeline
different statements), so a transaction of ``n`` statements costs ``n`` round trips: ``n``
sends, ``n`` wake-ups of the event loop, and as many on the server's side. A participant's batch
runs about five statements per command of which only the reads need an answer before the next
statement, so :class:`PipelinedPostgresDatabase` — a :class:`~ordersaga.db.postgres.
PostgresDatabase` whose reads, plain transactions and schema scripts stay on the asyncpg pool —
runs its :meth:`~PipelinedPostgresDatabase.pipeline` transactions on a connection of its own in
pipeline mode:

* :meth:`Tx.write` only queues its statement (in libpq's output buffer: no system call);
* at the next *sync point* — a read (``fetchone``/``fetchall``, or several at once:
  ``fetch_each``), an ``execute``, or the end of the transaction — everything queued goes to
  the server at once, ends with a Sync, and the results come back together; each queued write's
  row count is then checked, and a count other than the one it expects raises
  :class:`~ordersaga.errors.ConflictError`, as a write checked at once would;
* BEGIN goes with the first statement; the COMMIT is sent only after the last writes' counts
  were checked, so a transaction whose writes did not all change the rows they expected never
  commits; an exception rolls it back. A reply given after the block exits is durable.

A statement that fails (a unique violation, say) aborts the transaction on the server, which then
skips every statement queued after it: the first error is raised at the sync point, translated as
:mod:`ordersaga.db.postgres` translates asyncpg's (unique violation, deadlock, serialization
failure: :class:`ConflictError`; a lost connection: :class:`UnavailableError`; anything else:
:class:`StorageError`). Which of the queued statements it was cannot be told from the caller's
side: the participant kit runs such a batch again, unpipelined, to find out.

The wire is driven through psycopg's libpq binding directly (psycopg's own cursors flush the
socket at every statement, which costs about what they save). Each statement is prepared once
per connection (named, up to :data:`MAX_PREPARED` of them; then unnamed), with its parameters
sent untyped in PostgreSQL's text format: each parameter's type is the one the server infers
from the statement, as for a literal. Rows come back as dicts of the same Python types asyncpg
gives (``BIGINT`` → ``int``, ``DOUBLE PRECISION`` → ``float``, ``TEXT`` → ``str``).

Connections: up to ``pool_size``, opened when first needed, in autocommit mode (this module
sends BEGIN, COMMIT and ROLLBACK itself) and pipeline mode for good. One left in doubt — a sync
that did not finish (cancelled, connection lost) or a transaction not rolled back — is closed,
not reused.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import AsyncConnection
from psycopg.adapt import Transformer
from psycopg.pq import Conninfo, DiagnosticField, ExecStatus, TransactionStatus
from psycopg.pq.abc import PGconn, PGresult

from ordersaga.db.base import Row, Tx, stale
from ordersaga.db.pgtext import TEXT, text_of
from ordersaga.db.postgres import PostgresDatabase, to_dollar_params
from ordersaga.errors import ConflictError, StorageError, UnavailableError

__all__ = ["MAX_PREPARED", "PipelinedPostgresDatabase", "libpq_url"]

#: Statements prepared per connection; the next new ones run unnamed (parsed each time).
MAX_PREPARED = 256

_CONFLICTS = frozenset({b"23505", b"40P01", b"40001"})  # unique, deadlock, serialization
_COMMAND_OK = int(ExecStatus.COMMAND_OK)
_TUPLES_OK = int(ExecStatus.TUPLES_OK)
_ERRORS = (psycopg.Error, OSError)


def _unavailable(exc: BaseException) -> StorageError:
    if isinstance(exc, psycopg.OperationalError | OSError):
        return UnavailableError(f"postgresql unavailable: {exc}")
    return StorageError(f"postgresql: {exc}")


def _error(result: PGresult) -> StorageError:
    state = result.error_field(DiagnosticField.SQLSTATE) or b""
    message = result.error_message.decode(errors="replace").strip()
    if state in _CONFLICTS:
        return ConflictError(f"postgresql: {message}")
    return StorageError(f"postgresql: {message}")


#: A statement sent since the last sync: its SQL, the rows it must change (or None), and
#: whether it is the preparation of the statement named ``sql`` rather than the statement.
#: A plain tuple: one is built per statement.
_Sent = tuple[str, int | None, bool]


class _Link:
    """One connection in pipeline mode: what it sent since its last sync, its prepared names."""

    def __init__(self, conn: AsyncConnection[Any]) -> None:
        self.conn = conn
        self.pg: PGconn = conn.pgconn
        self.pg.enter_pipeline_mode()
        self.sent: list[_Sent] = []
        self.prepared: dict[str, bytes] = {}
        self._names = itertools.count()
        self.loader = Transformer(conn)
        #: False while a sync is under way: a link left so (cancelled, lost) is not reused.
        self.clean = True
        # The socket is watched for reading for the link's whole life, not at each wait (two
        # epoll_ctl calls and a selector update a round trip). It is watched through a copy of
        # its descriptor that only this link closes, after unwatching it: libpq closes its own
        # when the connection is lost, and the number could be reused by a new socket while
        # still registered with the loop.
        self._loop = asyncio.get_running_loop()
        self._fd = os.dup(self.pg.socket)
        self._waiter: asyncio.Future[None] | None = None
        self._watching = True
        self._loop.add_reader(self._fd, self._wake)

    def send(self, sql: str, params: tuple[Any, ...], expect: int | None = None) -> None:
        """Queue ``sql`` (prepared the first time) with ``params``; nothing is waited for."""
        pg, prepared = self.pg, self.prepared
        try:
            name = prepared.get(sql)
            text = TEXT.get
            values = [text(type(p), text_of)(p) for p in params]
            if name is None and len(prepared) < MAX_PREPARED:
                name = prepared[sql] = f"ordersaga_{next(self._names)}".encode()
                pg.send_prepare(name, to_dollar_params(sql).encode())
                self.sent.append((sql, None, True))
            if name is None:
                pg.send_query_params(to_dollar_params(sql).encode(), values)
            else:
                pg.send_query_prepared(name, values)
        except _ERRORS as exc:
            self.clean = False
            raise _unavailable(exc) from exc
        self.sent.append((sql, expect, False))

    async def sync(self) -> list[PGresult]:
        """Send what is queued and a Sync; the statements' results, their counts checked.

        Raises the first error (a failed statement, or a count other than expected) once
        every result up to the Sync is read: the connection is then ready for the next one.
        """
        sent, self.sent = self.sent, []
        self.clean = False
        results: list[PGresult] = []
        error: StorageError | None = None
        pg = self.pg
        try:
            pg.pipeline_sync()
            await self._flush()
            # Each statement's results end with None; a result is read without a coroutine of
            # its own (they are many), waiting only while libpq has not got the whole of it.
            for sql, expect, parse in sent:
                while pg.is_busy():
                    await self._ready(write=False)
                    pg.consume_input()
                result = pg.get_result()
                if result is None:
                    raise StorageError("postgresql: the pipeline is out of step")
                while True:
                    while pg.is_busy():
                        await self._ready(write=False)
                        pg.consume_input()
                    if pg.get_result() is None:
                        break
                status = result.status
                if status != _COMMAND_OK and status != _TUPLES_OK:
                    if parse:
                        del self.prepared[sql]  # not prepared: the next use prepares it
                    if error is None:
                        error = (
                            _error(result)
                            if status == ExecStatus.FATAL_ERROR
                            else StorageError(
                                f"postgresql: an unexpected {ExecStatus(status).name} result"
                            )
                        )
                    continue
                if parse:
                    continue
                if expect is not None and error is None:
                    changed = int(result.command_tuples or 0)
                    if changed != expect:
                        error = ConflictError(stale(sql, changed, expect))
                results.append(result)
            end = await self._next()
        except _ERRORS as exc:
            raise _unavailable(exc) from exc
        if end is None or end.status != ExecStatus.PIPELINE_SYNC:
            raise StorageError("postgresql: the pipeline is out of step")
        self.clean = True
        if error is not None:
            raise error
        return results

    async def _next(self) -> PGresult | None:
        pg = self.pg
        while pg.is_busy():
            await self._ready(write=False)
            pg.consume_input()
        return pg.get_result()

    async def _flush(self) -> None:
        pg = self.pg
        while pg.flush():
            # The server may be waiting for us to read its results before it reads on.
            await self._ready(write=True)
            pg.consume_input()

    async def _ready(self, *, write: bool) -> None:
        """Until the socket can be read (or, with ``write``, read or written)."""
        if not self._watching:
            raise UnavailableError("postgresql unavailable: the connection is lost")
        loop, fd = self._loop, self._fd
        waiter = self._waiter = loop.create_future()
        if write:
            loop.add_writer(fd, self._wake)
        try:
            await waiter
        finally:
            self._waiter = None
            if write:
                loop.remove_writer(fd)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            if not waiter.done():
                waiter.set_result(None)
            return
        # Readable while nothing waits (a notice, the server closing the connection): read it
        # now, or a level-triggered selector would call again at once, and again.
        try:
            self.pg.consume_input()
        except _ERRORS:
            self.clean = False
            self._unwatch()

    def _unwatch(self) -> None:
        if self._watching:
            self._watching = False
            self._loop.remove_reader(self._fd)
            os.close(self._fd)

    async def close(self) -> None:
        """Stop watching the socket, then close the connection."""
        self._unwatch()
        await self.conn.close()

    def rows(self, result: PGresult) -> list[Row]:
        names = [(result.fname(i) or b"").decode() for i in range(result.nfields)]
        loader = self.loader
        loader.set_pgresult(result)
        # The names come from the same result as the values, so the widths match: no strict
        # check (its keyword argument sends zip down the slow call path).
        return loader.load_rows(
            0,
            result.ntuples,
            lambda values: dict(zip(names, values)),  # noqa: B905 - widths match (above)
        )


class _PipelinedTx(Tx):
    """A write transaction in pipeline mode: writes are queued, checked at the next sync."""

    pipelined = True

    def __init__(self, link: _Link) -> None:
        self._link = link

    async def write(self, sql: str, params: tuple[Any, ...], expect: int | None) -> None:
        self._link.send(sql, params, expect)

    async def execute(self, sql: str, *params: Any) -> int:
        self._link.send(sql, params)
        return int((await self._link.sync())[-1].command_tuples or 0)

    async def fetchone(self, sql: str, *params: Any) -> Row | None:
        rows = await self.fetchall(sql, *params)
        return rows[0] if rows else None

    async def fetchall(self, sql: str, *params: Any) -> list[Row]:
        link = self._link
        link.send(sql, params)
        return link.rows((await link.sync())[-1])

    async def fetch_each(self, reads: Sequence[tuple[str, tuple[Any, ...]]]) -> list[list[Row]]:
        link = self._link
        for sql, params in reads:
            link.send(sql, params)
        results = await link.sync()
        rows = link.rows
        return [rows(result) for result in results[len(results) - len(reads) :]]


_LIBPQ_KEYWORDS = frozenset(option.keyword.decode() for option in Conninfo.get_defaults())


def libpq_url(url: str, settings: Mapping[str, str]) -> str:
    """``url`` as libpq takes it, with the server ``settings`` as its ``options``.

    asyncpg takes a query parameter libpq does not know (``?search_path=...``) as a server
    setting; libpq refuses it, so it goes into ``options`` (``-c name=value``) with ``settings``.
    """
    parts = urlsplit(url)
    known, server = [], {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in _LIBPQ_KEYWORDS:
            known.append((name, value))
        else:
            server[name] = value
    server.update(settings)
    if server:
        escaped = {k: v.replace("\\", "\\\\").replace(" ", "\\ ") for k, v in server.items()}
        known.append(("options", " ".join(f"-c {k}={v}" for k, v in escaped.items())))
    return urlunsplit(parts._replace(query=urlencode(known, quote_via=quote)))


class _Links:
    """Up to ``size`` pipelined connections to ``url``, opened when first needed."""

    def __init__(self, url: str, size: int, settings: Mapping[str, str]) -> None:
        self._url = libpq_url(url, settings)
        self._idle: list[_Link] = []
        self._room = asyncio.Semaphore(size)

    @asynccontextmanager
    async def link(self) -> AsyncIterator[_Link]:
        async with self._room:
            link = await self._take()
            try:
                yield link
            finally:
                if link.clean and link.pg.transaction_status == TransactionStatus.IDLE:
                    self._idle.append(link)
                else:
                    await link.close()

    async def _take(self) -> _Link:
        """An idle link (one found lost while idle is closed instead), or a new one."""
        while self._idle:
            link = self._idle.pop()
            if link.clean:
                return link
            await link.close()
        return await self._open()

    async def _open(self) -> _Link:
        try:
            return _Link(await AsyncConnection.connect(self._url, autocommit=True))
        except _ERRORS as exc:
            raise _unavailable(exc) from exc

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for link in idle:
            await link.close()


class PipelinedPostgresDatabase(PostgresDatabase):
    """A PostgreSQL database whose :meth:`pipeline` transactions are pipelined (module doc)."""

    pipelined = True

    def __init__(self, base: PostgresDatabase, links: _Links) -> None:
        super().__init__(base.url, base.pool)
        self._links = links

    @classmethod
    async def open(
        cls, url: str, *, max_size: int = 10, settings: Mapping[str, str] | None = None
    ) -> PipelinedPostgresDatabase:
        base = await PostgresDatabase.connect(url, max_size=max_size, settings=settings)
        return cls(base, _Links(url, max_size, settings or {}))

    def pipeline(self) -> AbstractAsyncContextManager[Tx]:
        return self._pipelined()

    @asynccontextmanager
    async def _pipelined(self) -> AsyncIterator[Tx]:
        async with self._links.link() as link:
            link.send("BEGIN", ())  # goes with the first statement
            try:
                yield _PipelinedTx(link)
                await link.sync()  # the last writes' counts are checked before the COMMIT
            except BaseException:
                if link.clean:
                    if link.sent:  # what is queued ends first (or fails: then it is moot)
                        with suppress(StorageError):
                            await link.sync()
                    link.send("ROLLBACK", ())
                    await link.sync()
                raise
            link.send("COMMIT", ())
            await link.sync()

    async def close(self) -> None:
        try:
            await self._links.close()
        finally:
            await super().close()
