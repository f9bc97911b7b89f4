"""A scripted world for unit tests of sagas: in-memory participants and a transport you steer.

:class:`Ledger` is a participant that keeps what a real one must keep — one stored reply per
idempotency key, the state of each resource, and tombstones (a compensation of a step it never
saw cancels the step, so a late action is refused) — and nothing else. :class:`ScriptedTransport`
calls ledgers directly and lets a test say, per command, whether the request or the response is
lost. Both are deterministic: nothing waits, nothing is random unless the test makes it so.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from ordersaga.errors import RequestLost, ResponseLost
from ordersaga.protocol.messages import (
    Command,
    KeyState,
    Phase,
    Probe,
    Reply,
    ReplyStatus,
    parse_key,
)
from ordersaga.transport.base import Transport

__all__ = ["Ledger", "ScriptedTransport"]


class Ledger:
    """A participant with idempotency records and tombstones; refuses what ``refuse`` says.

    Each resource (``<saga>:<step>``) moves ``applied -> compensated`` or
    ``applied -> confirmed``. A compensation of a resource never applied leaves it
    ``compensated`` (the tombstone); a confirmation of a resource no action created confirms a
    stand-alone retriable step. ``effects`` counts how many times each key took effect: in a
    correct saga no key ever takes effect twice.
    """

    def __init__(self, name: str, refuse: Callable[[Command], bool] = lambda c: False) -> None:
        self.name = name
        self.refuse = refuse
        self.replies: dict[str, Reply] = {}
        self.state: dict[str, str] = {}  # resource -> applied | compensated | confirmed
        self.effects: Counter[str] = Counter()  # how many times each key took effect

    async def handle(self, command: Command) -> Reply:
        """Apply ``command`` once per key; a repeat gets the stored reply."""
        if command.key in self.replies:
            return self.replies[command.key]
        saga, step, phase = parse_key(command.key)
        resource = f"{saga}:{step}"
        current = self.state.get(resource)
        if phase is Phase.ACTION:
            if current == "compensated":
                reply = Reply.refused("cancelled")
            elif self.refuse(command):
                reply = Reply.refused("no")
            else:
                self.state[resource] = "applied"
                reply = Reply(ReplyStatus.OK, {"step": step, "n": len(self.replies)})
        elif phase is Phase.COMPENSATE:
            if current == "confirmed":
                reply = Reply.refused("already confirmed")
            else:
                self.state[resource] = "compensated"
                reply = Reply(ReplyStatus.OK, {})
        elif current not in (None, "applied"):
            reply = Reply.refused(f"cannot confirm {current}")
        else:
            self.state[resource] = "confirmed"
            reply = Reply(ReplyStatus.OK, {})
        if reply.ok:
            self.effects[command.key] += 1
        self.replies[command.key] = reply
        return reply

    async def probe(self, key: str) -> Probe:
        """What became of ``key``: applied, refused, or never seen."""
        reply = self.replies.get(key)
        if reply is None:
            return Probe(KeyState.UNKNOWN)
        return Probe(KeyState.APPLIED if reply.ok else KeyState.REFUSED, reply)

    async def close(self) -> None:
        """Nothing to release."""


#: How one attempt goes wrong: ``"request"`` (lost before the service saw it), ``"response"``
#: (the service applied it, the answer was lost) or ``None`` (delivered).
Fault = str | None


class ScriptedTransport(Transport):
    """Calls the ledgers directly; ``fail(command)`` says how each attempt goes wrong.

    ``sent`` counts the attempts per key and ``log`` lists every key in the order it was sent,
    so a test can check, say, that compensations ran in reverse order.
    """

    def __init__(
        self,
        services: dict[str, Ledger],
        fail: Callable[[Command], Fault] = lambda c: None,
        probe_fails: bool = False,
    ) -> None:
        self.services = services
        self.fail = fail
        self.probe_fails = probe_fails
        self.sent: Counter[str] = Counter()
        self.log: list[str] = []

    async def send(self, command: Command) -> Reply:
        """Deliver to the named ledger, losing the request or the reply as scripted."""
        self.sent[command.key] += 1
        self.log.append(command.key)
        how = self.fail(command)
        if how == "request":
            raise RequestLost("scripted")
        reply = await self.services[command.service].handle(command)
        if how == "response":
            raise ResponseLost("scripted")
        return reply

    async def probe(self, service: str, key: str) -> Probe:
        """Ask the ledger, unless probes are scripted to get no answer."""
        if self.probe_fails:
            raise RequestLost("scripted probe")
        return await self.services[service].probe(key)
