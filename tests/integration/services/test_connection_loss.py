"""A PostgreSQL connection lost in the middle of a group commit — inside a command's SAVEPOINT,
on the retry path — is a StorageError for its caller (503 over HTTP), never another exception."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from ordersaga.db import open_database
from ordersaga.errors import StorageError
from ordersaga.participant.http import create_app
from ordersaga.participant.kit import Action, CommandRunner, Plan, Reader, RunnerOptions, Write
from ordersaga.protocol.messages import Command, Phase, Reply, ReplyStatus

pytestmark = pytest.mark.pg

DDL = (
    "CREATE TABLE IF NOT EXISTS idempotency (key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL,"
    " status TEXT NOT NULL, reply TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL)"
)


async def _ok(reader: Reader, resource: str, request: Any, now: float) -> Plan:
    return Plan(Reply(ReplyStatus.OK, {"done": True}))


async def _die(reader: Reader, resource: str, request: Any, now: float) -> Plan:
    # The server ends this very connection: what a crashed backend or a cut network does.
    kill = Write("SELECT pg_terminate_backend(pg_backend_pid())", (), expect=None)
    return Plan(Reply(ReplyStatus.OK, {}), (kill,))


class Participant:
    """The smallest participant: a command runner with two actions on a real database."""

    name = "svc"

    def __init__(self, runner: CommandRunner) -> None:
        self.runner = runner

    async def handle(self, command: Command) -> Reply:
        return await self.runner.handle(command)

    async def probe(self, key: str) -> Any:
        return await self.runner.probe(key)

    async def close(self) -> None:
        await self.runner.close()


@pytest.mark.parametrize("pipelined", [False, True], ids=["plain", "pipelined"])
async def test_a_connection_lost_inside_the_savepoint_path_is_a_503(
    pg_url: str, pipelined: bool
) -> None:
    db = await open_database(pg_url, pipelined=pipelined)
    await db.executescript(DDL)
    actions = [
        Action("ok", Phase.ACTION, lambda p: p, _ok),
        Action("die", Phase.ACTION, lambda p: p, _die),
    ]

    async def nothing(_reader: Reader, _resource: str) -> Reply | None:
        return None

    runner = CommandRunner(db, "svc", actions, nothing, RunnerOptions())
    app = create_app(Participant(runner), name="svc")  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            # One batch: a command that commits and one whose connection dies, so the batch is
            # retried with a SAVEPOINT around each command, where the connection dies again.
            answers = await asyncio.gather(
                *(
                    http.post(f"/commands/{action}", json={}, headers={"Idempotency-Key": key})
                    for action, key in (("ok", "s1:a:action"), ("die", "s2:a:action"))
                )
            )
        assert answers[0].status_code == 200, answers[0].text
        assert answers[1].status_code == 503, answers[1].text
        with pytest.raises(StorageError):
            await runner.handle(Command("svc", "die", "s3:a:action", {}))
    finally:
        await runner.close()
        await db.close()
