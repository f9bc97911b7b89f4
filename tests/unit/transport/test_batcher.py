"""Natural batching (transport.batcher) with a fake sender, and the batch wire format's round trip.

What is ready together leaves together and nothing waits at concurrency 1; while the requests in
flight are at their bound, commands queue and leave together as the next request, within the
bounds on commands and bytes; each caller gets its own outcome; a cancelled caller withdraws.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Sequence
from typing import Any

import pytest

from ordersaga.protocol.batchwire import (
    batch_body,
    encode_item,
    parse_batch,
    read_replies,
    reply_item,
)
from ordersaga.protocol.messages import Command, Reply, ReplyStatus
from ordersaga.protocol.wire import CODE_OF_STATUS
from ordersaga.transport.batcher import Batcher


class FakeSender:
    """Records each request's items; answers when ``release`` is set (at once by default)."""

    def __init__(self, *, held: bool = False) -> None:
        self.requests: list[list[str]] = []
        self.release = asyncio.Event()
        if not held:
            self.release.set()

    async def __call__(self, items: Sequence[str]) -> list[str | BaseException]:
        self.requests.append(list(items))
        await self.release.wait()
        return [ValueError(item) if item.startswith("bad") else item.upper() for item in items]


def _batcher(
    sender: FakeSender, *, in_flight: int = 1, batch: int = 100, size: int = 10_000
) -> Batcher[str, str]:
    return Batcher(sender, len, max_in_flight=in_flight, max_batch=batch, max_bytes=size)


async def test_a_lone_command_leaves_at_once() -> None:
    sender = FakeSender()
    batcher = _batcher(sender)
    assert await batcher.submit("a") == "A"
    assert await batcher.submit("b") == "B"
    assert sender.requests == [["a"], ["b"]]


async def test_commands_ready_together_leave_together_each_with_its_outcome() -> None:
    sender = FakeSender()
    batcher = _batcher(sender)
    outcomes = await asyncio.gather(
        *(batcher.submit(item) for item in ("a", "bad", "c")), return_exceptions=True
    )
    assert outcomes[0] == "A" and outcomes[2] == "C"
    assert isinstance(outcomes[1], ValueError)
    assert sender.requests == [["a", "bad", "c"]]
    assert (batcher.requests, batcher.items) == (1, 3)


async def test_commands_queue_behind_the_requests_in_flight() -> None:
    sender = FakeSender(held=True)
    batcher = _batcher(sender, in_flight=2)
    first = batcher.submit("a")
    await asyncio.sleep(0)
    second = batcher.submit("b")
    await asyncio.sleep(0)
    queued = [batcher.submit(item) for item in ("c", "d", "e")]
    await asyncio.sleep(0)
    assert sender.requests == [["a"], ["b"]]  # two in flight: the rest wait
    sender.release.set()
    assert await asyncio.gather(first, second, *queued) == ["A", "B", "C", "D", "E"]
    assert sender.requests == [["a"], ["b"], ["c", "d", "e"]]


async def test_batches_are_bounded_in_commands_and_bytes() -> None:
    sender = FakeSender()
    by_count = _batcher(sender, batch=2)
    await asyncio.gather(*(by_count.submit(item) for item in "abcde"))
    assert sender.requests == [["a", "b"], ["c", "d"], ["e"]]
    sender.requests.clear()
    by_size = _batcher(sender, size=4)
    await asyncio.gather(*(by_size.submit(item) for item in ("aa", "bb", "c", "dddddd", "e")))
    assert sender.requests == [["aa", "bb"], ["c"], ["dddddd"], ["e"]]  # too large: alone


async def test_a_cancelled_caller_withdraws_its_command() -> None:
    sender = FakeSender(held=True)
    batcher = _batcher(sender)
    first = batcher.submit("a")
    await asyncio.sleep(0)
    withdrawn = batcher.submit("b")
    kept = batcher.submit("c")
    withdrawn.cancel()
    sender.release.set()
    assert await asyncio.gather(first, kept) == ["A", "C"]
    assert sender.requests == [["a"], ["c"]]
    await batcher.close()


async def test_close_waits_for_what_is_queued() -> None:
    sender = FakeSender(held=True)
    batcher = _batcher(sender)
    futures = [batcher.submit("a")]
    await asyncio.sleep(0)
    futures.append(batcher.submit("b"))
    closing = asyncio.ensure_future(batcher.close())
    await asyncio.sleep(0)
    assert not closing.done()
    sender.release.set()
    await closing
    assert [f.result() for f in futures] == ["A", "B"]


def test_bounds_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Batcher(FakeSender(), len, max_in_flight=0, max_batch=1, max_bytes=1)


def test_a_batch_round_trips_through_the_wire_format() -> None:
    commands = [
        Command("inventory", "reserve", "o-1:reserve:action", {"order_id": "ü"}, 12.5),
        Command("inventory", "commit", "o-1:reserve:confirm", {}),
    ]
    items = [encode_item(c, json.dumps(c.payload).encode(), None) for c in commands]
    items[1] = encode_item(commands[1], b"{}", "00-trace")
    parsed = parse_batch("inventory", json.loads(batch_body(items)))
    assert parsed == [(commands[0], None), (commands[1], "00-trace")]
    replies = [Reply(ReplyStatus.OK, {"n": 1}), Reply.refused("no stock")]
    answer = json.loads(json.dumps({"replies": [reply_item(r) for r in replies]}))
    assert read_replies(answer, 2) == replies
    answer["replies"][1]["code"] = 200  # a refusal under the code of ok: unknown
    assert read_replies(answer, 2) == [replies[0], None]
    with pytest.raises(ValueError):
        read_replies(answer, 3)


@pytest.mark.parametrize(
    ("key", "sent_at", "traceparent"),
    [
        ("o-1:reserve:action", 1767225600.123, None),
        ('k"\\\n\u2028ü', None, "00-trace"),
        ("k", 12, None),
        ("k", 0.1 + 0.2, "00-trace"),
        ("k", -0.0, None),
        ("k", 5e-324, None),
        ("k", 1e300, None),
    ],
)
def test_an_item_is_the_json_of_its_fields(
    key: str, sent_at: float | None, traceparent: str | None
) -> None:
    """An item is put together from its values' encodings: the very text of its dict."""
    command = Command("inventory", "réserve", key, {"a": 1}, sent_at)
    head: dict[str, Any] = {"action": command.action, "key": key}
    if sent_at is not None:
        head["sent_at"] = float(sent_at)
    if traceparent is not None:
        head["traceparent"] = traceparent
    expected = json.dumps({**head, "payload": {"a": 1}}, separators=(",", ":"))
    assert encode_item(command, b'{"a":1}', traceparent) == expected.encode("ascii")


@pytest.mark.parametrize("sent_at", [math.nan, math.inf, -math.inf])
def test_an_item_with_a_sent_at_that_is_no_number_is_refused(sent_at: float) -> None:
    with pytest.raises(ValueError):
        encode_item(Command("inventory", "reserve", "k", {}, sent_at), b"{}", None)


@pytest.mark.parametrize(
    "item",
    [
        {"code": 200, "body": {}},  # no status
        {"code": 200, "status": "okay", "body": {}},  # no such status
        {"code": 200, "status": ["ok"], "body": {}},
        {"code": 422, "status": "ok", "body": {}},  # a code and a status that disagree
        {"code": 200.0, "status": "ok", "body": {}},
        {"code": True, "status": "ok", "body": {}},
        {"code": 503, "status": "unavailable", "reason": "db down"},
        {"code": 200, "status": "ok", "body": []},
        {"code": 200, "status": "ok", "body": {}, "reason": 7},
        ["ok"],
    ],
)
def test_a_reply_item_that_is_not_definite_is_unknown(item: Any) -> None:
    assert read_replies({"replies": [item]}, 1) == [None]


def test_each_definite_code_reads_back_as_its_status() -> None:
    for status, code in CODE_OF_STATUS.items():
        item = {"code": code, "status": status.value, "body": None, "reason": "why"}
        [reply] = read_replies({"replies": [item]}, 1)
        assert reply == Reply(status, {}, "why") and reply.status is status
    item = {"code": 413, "status": "invalid", "reason": "too large"}
    assert read_replies({"replies": [item]}, 1) == [Reply.invalid("too large")]
