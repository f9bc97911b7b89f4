"""The order API's clients: API keys read from a file of ``KEY CLIENT`` lines.

Each line holds a key (at least 16 printable ASCII characters, no spaces) and the name of the
client it belongs to (1-64 letters, digits, ``.``, ``_`` or ``-``); blank lines and lines
starting with ``#`` are ignored. Several keys may name one client (key rotation). A client owns
the orders posted with any of its keys: :func:`saga_id` puts the client's name in front of the
order id, so the same order id from two clients is two orders.
"""

from __future__ import annotations

import re
from pathlib import Path

from ordersaga.errors import ConfigError

__all__ = ["MIN_KEY_LENGTH", "order_id_of", "read_api_keys", "saga_id"]

MIN_KEY_LENGTH = 16
_CLIENT = re.compile(r"[A-Za-z0-9._-]{1,64}")
# A comma never appears in an order id (CONTRACT section 2) nor in a client name, so an API
# order's saga id can never be the id of an order streamed to `run --submit-only`.
_SEPARATOR = ","


def saga_id(client: str, order_id: str) -> str:
    """The saga id of ``client``'s order ``order_id``."""
    return f"{client}{_SEPARATOR}{order_id}"


def order_id_of(client: str, saga: str) -> str | None:
    """The order id of ``saga`` if it belongs to ``client``, else None."""
    prefix = f"{client}{_SEPARATOR}"
    return saga[len(prefix) :] if saga.startswith(prefix) else None


def read_api_keys(path: Path) -> dict[str, str]:
    """{key: client} from ``path``; ConfigError naming the line that is wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read API keys file {path}: {exc}") from None
    keys: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        where = f"API keys file {path}, line {lineno}"
        if len(fields) != 2:
            raise ConfigError(f"{where}: expected 'KEY CLIENT'")
        key, client = fields
        if len(key) < MIN_KEY_LENGTH or not key.isascii() or not key.isprintable():
            raise ConfigError(f"{where}: a key is at least {MIN_KEY_LENGTH} ASCII characters")
        if _CLIENT.fullmatch(client) is None:
            raise ConfigError(f"{where}: a client name is 1-64 letters, digits, '.', '_' or '-'")
        if key in keys:
            raise ConfigError(f"{where}: this key is listed twice")
        keys[key] = client
    if not keys:
        raise ConfigError(f"API keys file {path} holds no key")
    return keys
