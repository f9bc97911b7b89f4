"""What every participant service offers, whatever carries the calls to it.

A participant is a plain async object with its own database. The in-process transport calls it
directly; the HTTP app serves the same object. Services never import the saga engine: they see
only :class:`ordersaga.protocol.messages.Command` values with idempotency keys.
"""

from __future__ import annotations

from typing import Protocol

from ordersaga.protocol.messages import Command, Probe, Reply


class Participant(Protocol):
    """A service that takes commands under idempotency keys and answers status probes."""

    name: str

    async def handle(self, command: Command) -> Reply:
        """Apply ``command`` at most once; a repeat of its key returns the stored reply.

        Never raises for bad input (that is an ``invalid`` reply). Raises
        :class:`ordersaga.errors.StorageError` only when the database fails, in which case
        nothing was applied.
        """
        ...

    async def probe(self, key: str) -> Probe:
        """What became of ``key``: applied (with the stored reply), refused, or unknown."""
        ...

    async def close(self) -> None: ...
