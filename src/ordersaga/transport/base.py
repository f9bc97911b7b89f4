"""The transport protocol: send a command to a named service, get a reply or an error.

A transport either returns the service's definite :class:`~ordersaga.protocol.messages.Reply`, or
raises
a :class:`~ordersaga.errors.TransportError`, meaning the outcome is unknown: the request may or
may not have been applied. Implementations: in-process (direct calls into the service objects)
and HTTP; the fault injector wraps either.
"""

from __future__ import annotations

import abc
from types import TracebackType
from typing import Self

from ordersaga.protocol.messages import Command, Probe, Reply


class Transport(abc.ABC):
    """Carries commands and probes to named services (see the module docstring).

    A transport is an async context manager: ``async with`` closes it on the way out.
    """

    @abc.abstractmethod
    async def send(self, command: Command) -> Reply:
        """Deliver ``command`` to ``command.service``; raise TransportError if no answer came."""

    @abc.abstractmethod
    async def probe(self, service: str, key: str) -> Probe:
        """Ask ``service`` what became of ``key``; raise TransportError if no answer came."""

    async def drain(self) -> None:  # noqa: B027 - optional hook, nothing to do by default
        """Wait for deliveries still in flight (a fault injector's late ones)."""

    async def close(self) -> None:  # noqa: B027 - optional hook, nothing to do by default
        """Release connections."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the transport, whatever ended the block."""
        await self.close()
