"""The data key: 32 random bytes that seal card fields (see :mod:`ordersaga.orders.vault`).

Where it comes from, first match wins: ``ORDERSAGA_DATA_KEY`` (read by the command line, never
from argv), a ``--key-file``, or, for a data dir's own saga log, the data dir's ``data.key``,
created on first use. A key is written as 64 hex digits or as base64 (standard or URL-safe) of
32 bytes, alone on its line. A key file must be readable by its owner only: one readable by
others is refused, like ssh refuses such a private key.
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
import tempfile
from pathlib import Path

from ordersaga.errors import ConfigError
from ordersaga.orders.vault import KEY_BYTES

__all__ = ["DATA_KEY_ENV", "load_or_create_key_file", "new_key_text", "parse_key", "read_key_file"]

DATA_KEY_ENV = "ORDERSAGA_DATA_KEY"


def new_key_text() -> str:
    """A fresh random key, as base64 text."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode("ascii")


def parse_key(text: str, where: str) -> bytes:
    """The 32 key bytes written in ``text`` (hex or base64); ConfigError naming ``where``."""
    text = text.strip()
    key: bytes | None = None
    if len(text) == 2 * KEY_BYTES:
        try:
            key = bytes.fromhex(text)
        except ValueError:
            key = None
    if key is None:
        try:
            key = base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
        except (binascii.Error, ValueError):
            key = None
    if key is None or len(key) != KEY_BYTES:
        raise ConfigError(
            f"{where}: a data key is {KEY_BYTES} bytes written as 64 hex digits or base64"
            " (make one with: python3 -c 'import os,base64;"
            " print(base64.b64encode(os.urandom(32)).decode())')"
        )
    return key


def read_key_file(path: Path) -> bytes:
    """The key in ``path``; ConfigError if it is missing, unreadable, malformed or not 0600."""
    try:
        info = path.stat()
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read key file {path}: {exc}") from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"key file {path} is accessible by others (mode {stat.S_IMODE(info.st_mode):04o});"
            f" chmod 600 {path}"
        )
    return parse_key(text, f"key file {path}")


def load_or_create_key_file(path: Path) -> bytes:
    """The key in ``path``, creating the file (0600, a new random key) if it does not exist.

    The new key is written aside and linked into place, so two processes creating it at once
    agree on one key and neither ever reads a half-written file.
    """
    if path.exists():
        return read_key_file(path)
    text = new_key_text()
    try:
        fd, tmp = tempfile.mkstemp(prefix=".data.key.", dir=path.parent)  # mode 0600
    except OSError as exc:
        raise ConfigError(f"cannot create key file {path}: {exc.strerror}") from None
    try:
        with open(fd, "w", encoding="ascii") as f:
            f.write(text + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)
    except FileExistsError:
        return read_key_file(path)
    except OSError as exc:
        raise ConfigError(f"cannot create key file {path}: {exc.strerror}") from None
    finally:
        os.unlink(tmp)
    return parse_key(text, str(path))
