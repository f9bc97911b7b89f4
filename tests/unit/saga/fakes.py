"""Pure in-memory fakes for engine unit tests: a ledger service and a scriptable transport."""

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


class Ledger:
    """A participant with idempotency records and tombstones; refuses what ``refuse`` says."""

    def __init__(self, name: str, refuse: Callable[[Command], bool] = lambda c: False) -> None:
        self.name = name
        self.refuse = refuse
        self.replies: dict[str, Reply] = {}
        self.state: dict[str, str] = {}  # resource -> applied | compensated | confirmed
        self.effects: Counter[str] = Counter()  # how many times each key took effect

    async def handle(self, command: Command) -> Reply:
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
        else:
            if current != "applied":
                reply = Reply.refused(f"cannot confirm {current}")
            else:
                self.state[resource] = "confirmed"
                reply = Reply(ReplyStatus.OK, {})
        if reply.ok:
            self.effects[command.key] += 1
        self.replies[command.key] = reply
        return reply

    async def probe(self, key: str) -> Probe:
        reply = self.replies.get(key)
        if reply is None:
            return Probe(KeyState.UNKNOWN)
        return Probe(KeyState.APPLIED if reply.ok else KeyState.REFUSED, reply)

    async def close(self) -> None:
        return None


class ScriptedTransport(Transport):
    """Calls the ledgers directly; ``fail(key)`` says how an attempt for a key goes wrong."""

    def __init__(
        self,
        services: dict[str, Ledger],
        fail: Callable[[Command], str | None] = lambda c: None,
        probe_fails: bool = False,
    ) -> None:
        self.services = services
        self.fail = fail
        self.probe_fails = probe_fails
        self.sent: Counter[str] = Counter()

    async def send(self, command: Command) -> Reply:
        self.sent[command.key] += 1
        how = self.fail(command)
        if how == "request":
            raise RequestLost("scripted")
        reply = await self.services[command.service].handle(command)
        if how == "response":
            raise ResponseLost("scripted")
        return reply

    async def probe(self, service: str, key: str) -> Probe:
        if self.probe_fails:
            raise RequestLost("scripted probe")
        return await self.services[service].probe(key)
