"""The data dir: where each service's own database and the saga log live.

Layout (the embedded default)::

    DIR/ordersaga.json   what this data dir was initialised with (id, world, components, state)
    DIR/ordersaga.lock   held (flock) by the one process executing the data dir (see .lock)
    DIR/saga.db          the saga log
    DIR/inventory.db     the inventory service's database
    DIR/shipping.db      the shipping service's database
    DIR/payment.db       the payment service's database
    DIR/data.key         the data key sealing card fields (created on first use, unless
                         ORDERSAGA_DATA_KEY or --key-file gives one; see orders/vault.py)

A new data dir is initialised from the world, in this order: ``ordersaga.json`` is written first
(state ``initialising``, a new random id, the world and the components it will hold), then each
database is created and stamped with its identity (data dir id, component, world fingerprint; see
:mod:`ordersaga.db.identity`), and the state becomes ``ready``. A run killed during this resumes
it (nothing was executed yet, so a database without a stamp is simply made again).

A ready data dir is continued, never reset: every component it records must be there, non-empty,
whole (not truncated) and stamped with this data dir's identity, or the open is refused naming
the file, and nothing is created. A ``--world`` other than the data dir's is refused likewise.
A data dir made before identities existed (no id in ``ordersaga.json``) is adopted once: its
databases are stamped as they are.

Owner only. The data dir is created with mode 0700 and every file in it with 0600, whatever the
umask (a umask only ever narrows an explicit mode): the databases are pre-created 0600 (SQLite
gives its -wal, -shm and journal files the database file's mode), the meta file and the key file
are opened with mode 0600.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ordersaga.db.identity import Identity, claim_identity, fingerprint, read_identity
from ordersaga.db.sqlite import Mode, SqliteDatabase
from ordersaga.errors import ConfigError, ForeignDatabase, StorageError, StorageIOError
from ordersaga.local.datakey import load_or_create_key_file

META_FILE = "ordersaga.json"
KEY_FILE = "data.key"
FORMAT = 1
SERVICE_NAMES = ("inventory", "shipping", "payment")
SAGA_LOG = "saga_log"
#: Each component's file in the data dir.
FILES = {SAGA_LOG: "saga.db", **{name: f"{name}.db" for name in SERVICE_NAMES}}
_SQLITE_MAGIC = b"SQLite format 3\x00"


@dataclass(frozen=True, slots=True)
class Locations:
    """Where the saga log and each service's database are (URLs)."""

    store_url: str
    service_urls: dict[str, str]


@dataclass(frozen=True, slots=True)
class Meta:
    """The contents of ``ordersaga.json``."""

    id: str
    world: dict[str, Any]
    components: tuple[str, ...]
    ready: bool
    legacy: bool = False  # written before identities: adopt the databases as they are

    @property
    def world_fingerprint(self) -> str:
        return fingerprint(self.world)

    def identity(self, component: str) -> Identity:
        return Identity(component, self.id, self.world_fingerprint)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "id": self.id,
            "world": self.world,
            "world_fingerprint": self.world_fingerprint,
            "components": list(self.components),
            "state": "ready" if self.ready else "initialising",
        }


@dataclass(frozen=True, slots=True)
class DataDir:
    root: Path

    @property
    def meta_path(self) -> Path:
        return self.root / META_FILE

    def path(self, component: str) -> Path:
        return self.root / FILES[component]

    def locations(self) -> Locations:
        return Locations(
            f"sqlite:///{self.path(SAGA_LOG)}",
            {name: f"sqlite:///{self.path(name)}" for name in SERVICE_NAMES},
        )

    def exists(self) -> bool:
        return self.meta_path.exists()

    def data_key(self) -> bytes:
        """The data dir's own data key (``data.key``, created 0600 on first use)."""
        return load_or_create_key_file(self.root / KEY_FILE)

    def prepare(self) -> None:
        """Create the data dir (0700) if missing, or narrow an existing one of ours to 0700."""
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create data dir {self.root}: {exc.strerror}") from exc
        if not os.access(self.root, os.W_OK):
            raise ConfigError(f"data dir {self.root} is not writable")
        if self.root.stat().st_uid == os.getuid():
            self.root.chmod(0o700)  # a data dir made by an older version, or by hand

    def read_meta(self) -> Meta:
        try:
            data = json.loads(self.meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"data dir {self.root}: unreadable {META_FILE}: {exc}") from exc
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ConfigError(f"data dir {self.root}: not an ordersaga data dir of format {FORMAT}")
        world = data.get("world")
        if not isinstance(world, dict):
            raise ConfigError(f"data dir {self.root}: {META_FILE} holds no world")
        if "id" not in data:  # written before identities: what is there is what it holds
            present = tuple(c for c in FILES if self.path(c).exists())
            return Meta(uuid.uuid4().hex, world, present, ready=True, legacy=True)
        components = tuple(c for c in data.get("components", ()) if c in FILES)
        return Meta(str(data["id"]), world, components, data.get("state") == "ready")

    def write_meta(self, meta: Meta) -> None:
        """Record ``meta`` atomically: written aside, fsynced, renamed, the directory fsynced."""
        tmp = self.meta_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "w", encoding="utf-8") as f:
            json.dump(meta.to_json(), f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.meta_path)
        dir_fd = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    # -- opening --------------------------------------------------------------------------------

    async def open_for_writing(self, world: Mapping[str, Any], needed: Iterable[str]) -> Meta:
        """Check (or initialise) the data dir for a process that executes it; return its meta.

        ``world`` is the world to initialise a new data dir from, or the one the caller was
        given explicitly (checked against an existing data dir's); ``needed`` the components
        this process keeps in the data dir. The caller holds the data dir's lock.
        """
        needed = tuple(needed)
        if not self.exists():
            strays = [FILES[c] for c in FILES if self.path(c).exists()]
            if strays:
                raise ForeignDatabase(
                    f"data dir {self.root} holds {', '.join(strays)} but no {META_FILE}: it was"
                    " not made by ordersaga, or its record was deleted; nothing was changed"
                )
            meta = Meta(uuid.uuid4().hex, dict(world), needed, ready=False)
            self.write_meta(meta)
        else:
            meta = self.read_meta()
        if meta.ready:
            for component in needed:
                if component not in meta.components:
                    raise ForeignDatabase(
                        f"data dir {self.root} was initialised without {self.path(component)}"
                        " (that component lived elsewhere: give the same --store/--service-dbs)"
                    )
            await self.check(meta, "existing")
            if meta.legacy:
                self.write_meta(meta)
            return meta
        return await self._initialise(meta, needed)

    async def _initialise(self, meta: Meta, needed: tuple[str, ...]) -> Meta:
        """Create and stamp every component of a data dir still initialising."""
        components = tuple(dict.fromkeys((*meta.components, *needed)))
        for component in components:
            path = self.path(component)
            if path.exists():
                found = await _identity_of(path, "existing")
                if found == meta.identity(component):
                    continue
                if found is not None:
                    raise ForeignDatabase(f"{path} is refused: it belongs to another data dir")
                for leftover in (path, *_sidecars(path)):  # unstamped: our own unfinished start
                    leftover.unlink(missing_ok=True)
            db = SqliteDatabase(path)
            try:
                await claim_identity(db, meta.identity(component), str(path))
            finally:
                await db.close()
        meta = replace(meta, components=components, ready=True)
        self.write_meta(meta)
        return meta

    async def check(self, meta: Meta, mode: Mode) -> None:
        """Every component of ``meta`` is there, whole and this data dir's (else refused)."""
        for component in meta.components:
            path = self.path(component)
            check_file(path)
            if meta.legacy and mode != "readonly":
                db = SqliteDatabase(path, existing=True)
                try:
                    await claim_identity(db, meta.identity(component), str(path))
                finally:
                    await db.close()
                continue
            found = await _identity_of(path, mode)
            if found is None:
                if meta.legacy:
                    continue  # read-only: adopted by the next executing run
                raise ForeignDatabase(f"{path} is refused: it carries no identity of this data dir")
            why = meta.identity(component).mismatch(found)
            if why is not None:
                raise ForeignDatabase(f"{path} is refused: {why}")


def check_file(path: Path) -> None:
    """Refuse a missing, empty, non-SQLite or truncated database file, naming it."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            header = f.read(100)
    except FileNotFoundError:
        raise ForeignDatabase(f"{path} is missing (deleted?); nothing was created") from None
    except OSError as exc:
        raise StorageIOError(f"{path} cannot be read: {exc.strerror}") from exc
    if size == 0:
        raise ForeignDatabase(f"{path} is empty (0 bytes); nothing was created")
    if len(header) < 100 or not header.startswith(_SQLITE_MAGIC):
        raise StorageIOError(f"{path} is not a database (corrupt, or another kind of file)")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    valid = header[24:28] == header[92:96] and pages > 0
    wal = path.with_name(path.name + "-wal")
    # With a WAL file (a killed writer) the main file may lag behind its header until the next
    # checkpoint; without one, the header's page count is the file's size.
    if valid and not wal.exists() and size < page_size * pages:
        raise ForeignDatabase(
            f"{path} is truncated ({size} bytes, its header says {page_size * pages})"
        )


def _sidecars(path: Path) -> tuple[Path, Path]:
    return path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")


async def _identity_of(path: Path, mode: Mode) -> Identity | None:
    try:
        read_only = mode == "readonly"
        db = SqliteDatabase(path, read_only=read_only, existing=True, quiescent=read_only)
    except StorageIOError:
        raise
    except StorageError as exc:
        raise ForeignDatabase(f"{path} cannot be opened: {exc}") from exc
    try:
        return await read_identity(db)
    except StorageIOError:
        raise
    except StorageError as exc:
        raise ForeignDatabase(f"{path} cannot be read: {exc}") from exc
    finally:
        await db.close()
