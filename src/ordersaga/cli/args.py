"""What every command group shares: exit statuses, the usage error, argument types.

Exit statuses (each with one line on stderr, never a traceback): 0 success (a closed stdout,
e.g. ``| head -1``, also ends quietly with 0); 1 the audit found violations, or a run was aborted
(the saga log failed; the data dir stays consistent); 2 usage or configuration errors, including a
data dir or saga log executed by another process and a missing, emptied, truncated or foreign
database (the file is named, nothing is created); 65 some input lines could not be read at all;
70 an internal error (a bug; ``ORDERSAGA_DEBUG=1`` shows the traceback); 74 an I/O error (disk
full, a corrupt or unreadable database); 75 this process lost its right to execute the saga log
(another executor took it over; run again once it is done); 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import ipaddress
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from ordersaga.errors import ConfigError

if TYPE_CHECKING:
    from ordersaga.saga.definition import SagaDefinition

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_DATAERR, EXIT_INTERRUPTED = 0, 1, 2, 65, 130
EXIT_SOFTWARE, EXIT_IOERR, EXIT_FENCED = 70, 74, 75
DEFAULT_DATA_DIR = "./ordersaga-data"
SERVICES = ("inventory", "shipping", "payment")


class UsageError(Exception):
    """A command line that cannot be carried out: one line on stderr, exit status 2."""


class CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the time (a live progress display swaps it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


class DefaultsFormatter(argparse.HelpFormatter):
    """Shows an option's default after its help, unless it has none worth showing."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or default is None
            or default is False
            or default == argparse.SUPPRESS
            or (isinstance(default, dict | tuple | list) and not default)
            or not action.option_strings
        ):
            return text
        if isinstance(default, tuple):
            default = ",".join(map(str, default))
        return f"{text} (default: {default})"


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, exit status 2; help shows every default."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def fail(message: str) -> None:
    """One line for people on stderr, prefixed with the program's name."""
    sys.stderr.write(f"ordersaga: {message}\n")
    sys.stderr.flush()


def integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def positive_int(text: str) -> int:
    value = integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text}")
    return value


def non_negative_int(text: str) -> int:
    value = integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0: {text}")
    return value


def int_list(text: str) -> tuple[int, ...]:
    return tuple(positive_int(part) for part in text.split(","))


def probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be within [0, 1]: {text}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number: {text}")
    return value


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def duration(text: str) -> float:
    """``DURATION`` in seconds: a number and a unit, ``0s``, ``90s``, ``15m``, ``36h``, ``7d``."""
    number = text.rstrip("mshdw")
    unit = text[len(number) :]
    try:
        value = float(number) if unit in _UNITS and number else -1.0
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(
            f"not a duration: {text!r} (a number and a unit: ms, s, m, h, d or w, e.g. 36h)"
        )
    return value * _UNITS[unit]


def port(text: str) -> int:
    value = integer(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be within [0, 65535]: {text}")
    return value


def service_map(text: str) -> dict[str, str]:
    """``inventory=URL,shipping=URL,...``: a URL per service name."""
    return _service_map(text, SERVICES)


def any_service_map(text: str) -> dict[str, str]:
    """``NAME=URL,...`` for any service names (a worker's user sagas call services of their own)."""
    return _service_map(text, None)


def _service_map(text: str, known: tuple[str, ...] | None) -> dict[str, str]:
    urls: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, url = (x.strip() for x in part.partition("="))
        if not sep or not url:
            raise argparse.ArgumentTypeError(f"expected SERVICE=URL, got {part!r}")
        if known is not None and name not in known:
            raise argparse.ArgumentTypeError(
                f"unknown service {name!r} (expected {', '.join(known)})"
            )
        if not name or any(c.isspace() for c in name):
            raise argparse.ArgumentTypeError(f"bad service name {name!r}")
        if name in urls:
            raise argparse.ArgumentTypeError(f"service {name!r} given twice")
        urls[name] = url
    return urls


def saga_ref(text: str) -> SagaDefinition:
    """``package.module:NAME``: the :class:`SagaDefinition` named NAME in an importable module."""
    from ordersaga.saga.definition import SagaDefinition

    module_name, sep, attr = text.partition(":")
    if not sep or not module_name or not attr:
        raise argparse.ArgumentTypeError(f"expected package.module:NAME, got {text!r}")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # whatever the user's module raises on import, say it in one line
        raise argparse.ArgumentTypeError(f"cannot import {module_name!r}: {exc}") from None
    value = getattr(module, attr, None)
    if not isinstance(value, SagaDefinition):
        what = "nothing" if value is None else type(value).__name__
        raise argparse.ArgumentTypeError(f"{text} is {what}, not a SagaDefinition")
    return value


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(DEFAULT_DATA_DIR),
        help="databases live here",
    )


def add_service_options(parser: argparse.ArgumentParser, *, http: bool) -> None:
    parser.add_argument(
        "--service-dbs",
        type=service_map,
        default={},
        metavar="SERVICE=URL,...",
        help="a service's database URL (sqlite:///FILE or postgresql://...), overriding the"
        " data dir's file",
    )
    if not http:
        return
    parser.add_argument(
        "--services",
        type=service_map,
        default={},
        metavar="SERVICE=URL,...",
        help="the HTTP base URL of every service (see 'ordersaga serve'): calls go over HTTP",
    )
    parser.add_argument(
        "--connect-timeout",
        type=positive_float,
        default=2.0,
        help="HTTP connect timeout in seconds",
    )
    parser.add_argument(
        "--read-timeout",
        type=positive_float,
        default=10.0,
        help="HTTP read timeout in seconds",
    )


SERVICE_TOKEN_ENV = "ORDERSAGA_SERVICE_TOKEN"
MIN_TOKEN_LENGTH = 16


def add_key_file(parser: argparse.ArgumentParser, default: str) -> None:
    """``--key-file``: where the data key sealing card numbers is (never on the command line)."""
    parser.add_argument(
        "--key-file",
        type=Path,
        metavar="PATH",
        help=f"file holding the data key that seals card numbers (default: $ORDERSAGA_DATA_KEY,"
        f" else {default})",
    )


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only this machine (a loopback address, or localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def add_token_file(parser: argparse.ArgumentParser, what: str) -> None:
    """``--token-file``: where the service token is (never on the command line)."""
    parser.add_argument(
        "--token-file",
        type=Path,
        metavar="PATH",
        help=f"file holding the service token {what} (default: ${SERVICE_TOKEN_ENV}, else none)",
    )


def data_key(args: argparse.Namespace) -> bytes | None:
    """The data key from ``$ORDERSAGA_DATA_KEY`` or ``--key-file``; None when neither is set."""
    from ordersaga.local.datakey import DATA_KEY_ENV, parse_key, read_key_file

    text = os.environ.get(DATA_KEY_ENV)
    if args.key_file is not None:
        return read_key_file(args.key_file)
    if text:
        return parse_key(text, f"${DATA_KEY_ENV}")
    return None


def service_token(args: argparse.Namespace) -> str | None:
    """The service token from ``--token-file`` or ``$ORDERSAGA_SERVICE_TOKEN``; None if unset."""
    path: Path | None = getattr(args, "token_file", None)
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read token file {path}: {exc}") from None
        where = f"token file {path}"
    else:
        text = os.environ.get(SERVICE_TOKEN_ENV, "").strip()
        where = f"${SERVICE_TOKEN_ENV}"
        if not text:
            return None
    if len(text) < MIN_TOKEN_LENGTH or not text.isascii() or not text.isprintable():
        raise ConfigError(
            f"{where}: a service token is at least {MIN_TOKEN_LENGTH} printable ASCII characters"
        )
    if " " in text:
        raise ConfigError(f"{where}: a service token has no spaces")
    return text


def load_world(path: Path | None) -> object:
    from ordersaga.orders.world import load_world as load

    return None if path is None else load(path)


def open_input(name: str) -> object:
    if name == "-":
        return sys.stdin.buffer
    try:
        return open(name, "rb", buffering=0)
    except OSError as exc:
        raise ConfigError(f"cannot read orders file {name}: {exc.strerror}") from exc


def add_order_deadline(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--order-deadline",
        type=duration,
        default=600.0,
        metavar="DURATION",
        help="how long an order waits for an unreachable service before it fails (flagged for"
        " attention), counted from its saga's creation: 90s, 10m, 2h (default: 10m)",
    )
