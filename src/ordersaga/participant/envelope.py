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
from ordersaga.protocol.messages import Command, canonical_json, parse_key

__all__ = ["Envelope"]


class Envelope:
    """Validates and parses the commands of one service's ``actions``."""

    def __init__(
        self, service: str, actions: Sequence[Action[Any]], max_payload_bytes: int
    ) -> None:
        self._service = service
        self._actions = {a.name: a for a in actions}
        # What every fingerprint of an action starts with (see prepare).
        self._fingerprint_heads = {
            a.name: f'{{"action":{canonical_json(a.name)},"payload":' for a in actions
        }
        self._max_payload_bytes = max_payload_bytes

    def prepare(self, command: Command) -> Prepared:
        """The command, validated and parsed (BadPayload with the reason when it is not)."""
        if command.service != self._service:
            raise BadPayload(f"command for service {command.service!r} sent to {self._service!r}")
        action = self._actions.get(command.action) if isinstance(command.action, str) else None
        if action is None:
            raise BadPayload(f"unknown action {command.action!r} for service {self._service!r}")
        try:
            saga_id, step, phase = parse_key(command.key)
        except ValueError as exc:
            raise BadPayload(str(exc)) from None
        if phase is not action.phase:
            raise BadPayload(f"action {action.name!r} needs a {action.phase} key, not {phase}")
        payload = command.payload
        if type(payload) is not dict:
            payload = mapping(payload, "payload")
        text = self._canonical_payload(payload)
        # A plain dict is parsed as it is: it holds JSON data (it encoded), and ``parse`` checks
        # each value's type and copies what it keeps. Any other mapping is read back from JSON.
        plain: Mapping[str, Any] = payload if type(payload) is dict else json.loads(text)
        # The canonical JSON of {"action": ..., "payload": plain}, without encoding plain again.
        head = self._fingerprint_heads[action.name]
        if action.fingerprinted is not None:
            view = action.fingerprinted(plain)
            if view is not plain:
                text = canonical_json(dict(view))
        return Prepared(
            command.key,
            f"{saga_id}:{step}",  # the resource
            hashlib.sha256(f"{head}{text}}}".encode()).hexdigest(),  # the fingerprint
            action,
            action.parse(plain),
        )

    def _canonical_payload(self, payload: Mapping[str, Any]) -> str:
        """The payload's canonical JSON text (what HTTP would carry), refusing oversized ones."""
        try:
            text = canonical_json(payload if type(payload) is dict else dict(payload))
            if not text.isascii():
                text.encode()  # a lone surrogate has no UTF-8 form: it could not be stored
        except UnicodeEncodeError:
            raise BadPayload("payload holds a lone surrogate (not valid Unicode)") from None
        except (TypeError, ValueError, RecursionError):
            raise BadPayload("payload is not JSON data") from None
        limit = self._max_payload_bytes
        if len(text) * 4 > limit and len(text.encode()) > limit:  # ≤ 4 UTF-8 bytes a character
            raise BadPayload(f"payload is larger than {limit} bytes")
        return text
