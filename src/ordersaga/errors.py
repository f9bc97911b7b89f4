"""Every error that ordersaga raises on purpose derives from :class:`OrderSagaError`.

Foreign errors (sqlite3, asyncpg, httpx, OSError) are translated into these at the boundary
where they occur, so callers classify failures by type and never by message::

    OrderSagaError
    ├── ConfigError              bad configuration or world file (a usage error: exit 2)
    │   ├── ExecutorBusy         another process executes this data dir or saga log (exit 2)
    │   ├── ForeignDatabase      a database is missing, emptied, truncated or foreign (exit 2)
    │   └── AccessRefused        a service refused our credentials (HTTP 401): stop (exit 2)
    ├── DefinitionError          a saga definition is inconsistent (checked before it runs)
    ├── StorageError             a database failed
    │   ├── ConflictError        a concurrent writer won (version mismatch, unique key, busy)
    │   │   └── OwnershipLost    the saga log refused a runner's write: another owns the saga
    │   ├── ExecutorFenced       this process lost the right to execute the log (exit 75)
    │   ├── StorageIOError       disk full, corrupt or unreadable database (exit 74)
    │   └── UnavailableError     the database cannot be reached right now (retryable)
    └── TransportError           no definite answer from a service: the outcome is unknown
        ├── RequestLost          the request did not reach the service
        │   └── ServiceUnreachable   no connection could be opened (refused, DNS, connect timeout)
        └── ResponseLost         the service may have applied it; the answer did not come back

(An armed crash point ends the process with ``os._exit``; it raises nothing.)
"""

from __future__ import annotations


class OrderSagaError(Exception):
    """The root of every error ordersaga raises on purpose."""


class ConfigError(OrderSagaError):
    """A configuration value or world file is unusable; the message says which and why."""


class ExecutorBusy(ConfigError):
    """Another live process executes the sagas of this data dir or saga log."""


class ForeignDatabase(ConfigError):
    """A database of an initialised data dir (or a service's or saga log's database) is missing,
    emptied, truncated, or belongs to another data dir, component or world. Nothing is created."""


class AccessRefused(ConfigError):
    """A service answered 401 to a call: it refused our service token before doing anything.

    Not an outage and not an answer: retrying cannot help until an operator fixes the token, and
    failing the order would be wrong (the service never looked at it). The step call raises it
    instead of retrying; ``run`` and ``worker`` stop with its message (exit 2), and the saga stays
    unfinished in the log, resumed once the token is right."""


class DefinitionError(OrderSagaError):
    """A saga definition breaks a structural rule (a compensatable step without compensation)."""


class StorageError(OrderSagaError):
    """A database operation failed."""


class ConflictError(StorageError):
    """A concurrent writer won: the caller should re-read and retry."""


class OwnershipLost(ConflictError):
    """The saga log refused a runner's write: another runner took the saga over (its lease
    lapsed) and it is not finished yet. The runner must stop driving it."""


class ExecutorFenced(StorageError):
    """This process lost its right to execute the saga log (another executor took it over, or
    its exclusive session was terminated); its write was refused and it must stop executing."""


class StorageIOError(StorageError):
    """The database could not be read or written at the I/O level: disk full, a file that is not
    (or no longer) a database, an unreadable file."""


class UnavailableError(StorageError):
    """The database is unreachable or busy for now; retrying later may succeed."""


class TransportError(OrderSagaError):
    """A call to a service ended without a definite answer: its outcome is unknown."""


class RequestLost(TransportError):
    """The request never reached the service (connect failure, lost packet)."""


class ServiceUnreachable(RequestLost):
    """No connection to the service could be opened (connection refused, DNS failure, connect
    timeout): the request certainly never arrived. An outage, not an answer: retried without
    spending the unknown-outcome budget (see :mod:`ordersaga.saga.calls`)."""


class ResponseLost(TransportError):
    """The request may have been applied; the response did not come back (timeout, reset, 5xx)."""
