"""A Reply is a frozen value: its own __init__ must behave like the generated one."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from ordersaga.protocol.messages import Reply, ReplyStatus, canonical_json


def test_a_reply_without_a_body_gets_a_new_empty_dict() -> None:
    first, second = Reply(ReplyStatus.OK), Reply(ReplyStatus.OK)
    assert first.body == {} and first.body is not second.body
    assert first.reason is None and first.body_json is None


def test_fields_by_position_or_name_and_an_explicit_none_body_kept() -> None:
    reply = Reply(status=ReplyStatus.REFUSED, body={"a": 1}, reason="no", body_json='{"a":1}')
    assert (reply.status, reply.body, reply.reason) == (ReplyStatus.REFUSED, {"a": 1}, "no")
    assert Reply(ReplyStatus.OK, None).body is None  # type: ignore[arg-type]


def test_equality_and_repr_ignore_the_cached_body_json() -> None:
    plain = Reply(ReplyStatus.OK, {"a": 1})
    cached = Reply(ReplyStatus.OK, {"a": 1}, None, '{"a":1}')
    assert plain == cached and repr(plain) == repr(cached)


def test_frozen_replaceable_picklable() -> None:
    reply = Reply(ReplyStatus.OK, {"a": 1}, "why")
    with pytest.raises(dataclasses.FrozenInstanceError):
        reply.reason = "other"  # type: ignore[misc]
    assert dataclasses.replace(reply, reason="other").reason == "other"
    assert pickle.loads(pickle.dumps(reply)) == reply
    assert reply.body_text() == canonical_json({"a": 1}) == reply.body_json
