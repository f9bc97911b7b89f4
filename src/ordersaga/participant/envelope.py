"""A command's envelope checked and its payload parsed, before anything is looked up.

The service and action names, the key (:func:`ordersaga.protocol.messages.parse_key`) and its
phase (the action's), the payload's size and JSON-ness, then the action's ``parse``; the
command's fingerprint is the SHA-256 of the canonical JSON of its action and payload (see
:mod:`ordersaga.participant.kit`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from ordersaga.participant.fields import BadPayload, mapping
from ordersaga.participant.plan import Action, Prepared
from ordersaga.protocol.messages import (
    MAX_KEY_LENGTH,
    Command,
    Phase,
    canonical_bytes,
    canonical_json,
    parse_key,
)
from ordersaga.slots import tuple_new

__all__ = ["Envelope"]

_sha256 = hashlib.sha256


def _resource(key: Any, phase: Phase, action: str) -> str:
    """The resource (``<saga id>:<step>``) of ``key``, a well-formed key of ``phase``; else
    BadPayload, with :func:`~ordersaga.protocol.messages.parse_key`'s reason or the phase's.

    The usual key is told by the checks parse_key makes, without its list and tuple (a key per
    command); anything else goes through parse_key itself.
    """
    if type(key) is str and len(key) <= MAX_KEY_LENGTH and key.isprintable() and " " not in key:
        resource, _, tail = key.rpartition(":")
        saga_id, _, step = resource.rpartition(":")
        if tail == phase and saga_id and step:  # a saga id implies the colon before the step
            return resource
    try:
        saga_id, step, kind = parse_key(key)
    except ValueError as exc:
        raise BadPayload(str(exc)) from None
    if kind is not phase:
        raise BadPayload(f"action {action!r} needs a {phase} key, not {kind}")
    return f"{saga_id}:{step}"


class Envelope:
    """Validates and parses the commands of one service's ``actions``."""

    def __init__(
        self, service: str, actions: Sequence[Action[Any]], max_payload_bytes: int
    ) -> None:
        self._service = service
        # Each action with what every fingerprint of it starts with (see prepare).
        self._actions = {
            a.name: (a, f'{{"action":{canonical_json(a.name)},"payload":'.encode()) for a in actions
        }
        self._max_payload_bytes = max_payload_bytes

    def prepare(self, command: Command) -> Prepared:
        """The command, validated and parsed (BadPayload with the reason when it is not)."""
        if command.service != self._service:
            raise BadPayload(f"command for service {command.service!r} sent to {self._service!r}")
        name = command.action
        known = self._actions.get(name) if isinstance(name, str) else None
        if known is None:
            raise BadPayload(f"unknown action {name!r} for service {self._service!r}")
        action, head = known
        resource = _resource(command.key, action.phase, action.name)
        payload = command.payload
        if type(payload) is dict:
            # A plain dict is parsed as it is: it holds JSON data (it encoded), and ``parse``
            # checks each value's type and copies what it keeps.
            plain: Mapping[str, Any] = payload
            data = self._canonical_payload(payload)
        else:  # any other mapping is read back from JSON
            data = self._canonical_payload(mapping(payload, "payload"))
            plain = json.loads(data)
        # The canonical JSON of {"action": ..., "payload": plain}, without encoding plain again.
        if action.fingerprinted is not None:
            view = action.fingerprinted(plain)
            if view is not plain:
                data = canonical_bytes(dict(view))
        return tuple_new(
            Prepared,
            (
                command.key,
                resource,
                _sha256(head + data + b"}").hexdigest(),  # the fingerprint
                action,
                action.parse(plain),
            ),
        )

    def _canonical_payload(self, payload: Mapping[str, Any]) -> bytes:
        """The payload's canonical JSON in UTF-8 (what HTTP would carry), refusing oversized
        ones."""
        try:
            data = canonical_bytes(payload if type(payload) is dict else dict(payload))
        except UnicodeEncodeError:
            # A lone surrogate has no UTF-8 form: it could not be stored.
            raise BadPayload("payload holds a lone surrogate (not valid Unicode)") from None
        except (TypeError, ValueError, RecursionError):
            raise BadPayload("payload is not JSON data") from None
        limit = self._max_payload_bytes
        if len(data) > limit:
            raise BadPayload(f"payload is larger than {limit} bytes")
        return data
