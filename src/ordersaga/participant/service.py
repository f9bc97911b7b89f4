"""The common life of a participant service: open (schema, config), handle, probe, close.

Concrete services (inventory, shipping, payment) declare their name, schema, resource
:class:`~ordersaga.participant.lifecycle.Lifecycle` and actions; this base class wires them to a
:class:`~ordersaga.participant.kit.CommandRunner` and satisfies
:class:`ordersaga.protocol.participant.Participant`.
"""

from __future__ import annotations

import abc
from collections.abc import Coroutine, Mapping, Sequence
from types import TracebackType
from typing import Any, ClassVar, Self

from ordersaga.db import Database
from ordersaga.participant.kit import Action, CommandRunner, KitStats, RunnerOptions, Write
from ordersaga.participant.lifecycle import Lifecycle
from ordersaga.participant.schema import ensure_schema, load_or_seed_config
from ordersaga.protocol.messages import Command, Probe, Reply
from ordersaga.telemetry.histogram import Histogram

__all__ = ["KitService"]


class KitService(abc.ABC):
    """A participant backed by its own database. The service owns ``db`` and closes it."""

    name: str
    schema_version: ClassVar[int] = 1
    ddl: ClassVar[str]
    lifecycle: ClassVar[Lifecycle]

    def __init__(
        self, db: Database, stored_config: Mapping[str, Any], options: RunnerOptions
    ) -> None:
        self.db = db
        self.options = options
        self._load_config(stored_config)
        self.runner = CommandRunner(
            db,
            self.name,
            self.actions(),
            self.lifecycle.cancelled_action,
            options,
            existing=self.lifecycle.refused_existing,
        )

    @abc.abstractmethod
    def _load_config(self, stored: Mapping[str, Any]) -> None:
        """Adopt the configuration stored in the database (validated when it was seeded)."""

    @abc.abstractmethod
    def actions(self) -> Sequence[Action[Any]]:
        """The commands this service accepts, each with its phase, parser and decider."""

    @classmethod
    async def _prepare_database(
        cls,
        db: Database,
        config: Mapping[str, Any] | None,
        seed: Sequence[Write],
        options: RunnerOptions,
    ) -> dict[str, Any]:
        """Create the schema and return the stored config, seeding a new database first."""
        await ensure_schema(db, cls.name, cls.schema_version, cls.ddl)
        return await load_or_seed_config(db, cls.name, config, seed, float(options.clock.time()))

    @property
    def stats(self) -> KitStats:
        return self.runner.stats

    @property
    def batch_sizes(self) -> Histogram:
        """Commands per group commit (for the metrics)."""
        return self.runner.batch_sizes

    def handle(self, command: Command) -> Coroutine[Any, Any, Reply]:
        """Apply ``command`` at most once; see :class:`ordersaga.protocol.participant.Participant`.

        The runner's coroutine itself, not one wrapping it: one level less for every suspension.
        """
        return self.runner.handle(command)

    async def probe(self, key: str) -> Probe:
        return await self.runner.probe(key)

    async def close(self) -> None:
        """Let pending commands commit, then close the database."""
        try:
            await self.runner.close()
        finally:
            await self.db.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the service (and its database), whatever ended the block."""
        await self.close()
