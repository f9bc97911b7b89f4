"""One executing process per data dir: an exclusive ``flock`` on ``DIR/ordersaga.lock``.

Why it cannot be lost or faked:

* The lock is the kernel's, on an open file description of the lock file, taken with
  ``LOCK_EX | LOCK_NB`` before any database of the data dir is opened for writing and held until
  the process ends. The kernel releases it when the process dies, however it dies (SIGKILL
  included): there is no stale lock to clean up, and no pid file whose owner might be alive
  again under another program.
* The pid written into the file after locking is for the refusal message only; nothing decides
  on it.
* Read-only commands take the *shared* lock when nobody executes (so that no executor starts
  while they open the databases without a WAL; see :mod:`ordersaga.local.readonly`), and read
  beside an executor when it holds the exclusive lock. They never create the lock file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from ordersaga.errors import ConfigError, ExecutorBusy

LOCK_FILE = "ordersaga.lock"
#: A writer that finds the lock taken tries again this long: a read-only command holds it
#: shared for a moment; an executor holds it for its whole life.
RETRY_FOR = 0.5


class DataDirLock:
    """The held exclusive lock of one data dir (released by :meth:`release` or by dying)."""

    def __init__(self, root: Path, fd: int) -> None:
        self.root = root
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, root: Path, *, retry_for: float = RETRY_FOR) -> DataDirLock:
        """Lock ``root`` for this process, or raise :class:`ExecutorBusy` naming the holder."""
        path = root / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise ConfigError(f"cannot open the lock file {path}: {exc.strerror}") from exc
        deadline = time.monotonic() + retry_for
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                    os.close(fd)
                    raise ConfigError(f"cannot lock {path}: {exc.strerror}") from exc
            if time.monotonic() >= deadline:
                holder = _holder(fd)
                os.close(fd)
                raise ExecutorBusy(
                    f"data dir {root} is executed by another process ({holder}); wait for it"
                    " to end, or use another --data-dir"
                )
            time.sleep(0.02)
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        return cls(root, fd)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor releases the flock


def _holder(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        pid = int(os.pread(fd, 32, 0).decode("ascii").strip())
        return f"pid {pid}"
    return "a read-only command, or a process starting"


@contextlib.contextmanager
def shared_if_idle(root: Path) -> Iterator[bool]:
    """Hold ``root``'s lock shared while no executor holds it; yield whether one does.

    Never creates the lock file: a data dir without one has never been executed by this
    version, and nothing executes it now either unless it is being created this instant.
    """
    path = root / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        yield False
        return
    except OSError as exc:
        raise ConfigError(f"cannot open the lock file {path}: {exc.strerror}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            executing = False
        except OSError:
            executing = True
        yield executing
    finally:
        os.close(fd)
