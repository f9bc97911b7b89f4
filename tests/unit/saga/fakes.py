"""The engine unit tests' fakes: the scripted world shipped in :mod:`ordersaga.saga.testing`."""

from ordersaga.saga.testing import Ledger, ScriptedTransport

__all__ = ["Ledger", "ScriptedTransport"]
