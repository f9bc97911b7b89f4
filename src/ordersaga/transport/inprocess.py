"""The in-process transport: direct calls into service objects, each with its own database."""

from __future__ import annotations

from collections.abc import Mapping

from ordersaga.errors import ConfigError, ResponseLost, StorageError
from ordersaga.protocol.messages import Command, Probe, Reply
from ordersaga.protocol.participant import Participant
from ordersaga.transport.base import Transport


class InProcessTransport(Transport):
    """Calls participant objects directly, by service name (no network, no serialisation).

    A participant's :class:`StorageError` becomes :class:`ResponseLost`: its transaction rolled
    back, and to the engine that is an unknown outcome, retried under the same key.
    """

    def __init__(self, services: Mapping[str, Participant]) -> None:
        self._services = dict(services)

    def _service(self, name: str) -> Participant:
        try:
            return self._services[name]
        except KeyError:
            raise ConfigError(f"no service named {name!r}") from None

    async def send(self, command: Command) -> Reply:
        service = self._services.get(command.service)
        if service is None:
            service = self._service(command.service)  # raises
        try:
            return await service.handle(command)
        except StorageError as exc:
            # The service's transaction rolled back, but to the caller this is a failed call
            # like any other: an unknown outcome, retried under the same key.
            raise ResponseLost(f"{command.service}: {exc}") from exc

    async def probe(self, service: str, key: str) -> Probe:
        participant = self._service(service)
        try:
            return await participant.probe(key)
        except StorageError as exc:
            raise ResponseLost(f"{service}: {exc}") from exc
