"""What a participant's app serves and counts (per app, never global), and how it answers: JSON
with ASCII escapes, the status code of each reply (see :mod:`ordersaga.participant.http`).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from ordersaga.errors import StorageError
from ordersaga.participant.body import BODY_TIMEOUT_SECONDS, parse_json, read_body
from ordersaga.participant.openapi import REQUEST_TIMEOUT, SERVICE_ACTIONS
from ordersaga.protocol.messages import Reply, ReplyStatus
from ordersaga.protocol.participant import Participant
from ordersaga.protocol.wire import CODE_OF_STATUS, TOO_LARGE, UNAVAILABLE
from ordersaga.telemetry.tracing import Tracing

log = logging.getLogger(__name__)


RETRY_AFTER_SECONDS = "1"


class AsciiJson(JSONResponse):
    """JSON with ASCII escapes: a reply that echoes odd input can always be encoded."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False).encode("ascii")


class Served:
    """The participant an app serves, and what the app counted (per app, never global)."""

    def __init__(
        self, name: str, participant: Participant | None, tracing: Tracing | None = None
    ) -> None:
        self.name = name
        self._participant = participant
        self.codes: Counter[int] = Counter()
        self.commands: Counter[tuple[str, str]] = Counter()  # (action, result)
        self.actions = frozenset(doc.name for doc in SERVICE_ACTIONS.get(name, ()))
        self.tracing = tracing

    @property
    def participant(self) -> Participant:
        if self._participant is None:
            raise RuntimeError(f"the {self.name} app has not started (no participant yet)")
        return self._participant

    def attach(self, participant: Participant | None) -> None:
        self._participant = participant

    def answer(self, reply: Reply) -> Response:
        retry = reply.status is ReplyStatus.IN_FLIGHT
        headers = {"Retry-After": RETRY_AFTER_SECONDS} if retry else None
        return self.respond(CODE_OF_STATUS[reply.status], reply.to_json(), headers)

    async def read_json(
        self, request: Request, limit: int, what: str
    ) -> tuple[Any, Response | None]:
        """The request's JSON body (``what`` names it in the log), or the error response to send.

        A body that goes away, arrives too slowly, is larger than ``limit`` bytes or is not
        JSON is the client's fault: a 4xx, never a 5xx.
        """
        try:
            raw = await read_body(request, limit)
        except ClientDisconnect:
            log.info("%s: a client went away before sending the whole %s", self.name, what)
            return None, self.invalid("the client went away before sending the whole body")
        except TimeoutError:
            log.info("%s: a %s did not arrive within %g s", self.name, what, BODY_TIMEOUT_SECONDS)
            return None, self.invalid("the body did not arrive in time", REQUEST_TIMEOUT)
        if raw is None:
            return None, self.invalid(f"request body is larger than {limit} bytes", TOO_LARGE)
        try:
            return parse_json(raw), None
        except ValueError as exc:
            return None, self.invalid(f"request body is not JSON: {exc}")

    def invalid(self, reason: str, code: int = CODE_OF_STATUS[ReplyStatus.INVALID]) -> Response:
        return self.respond(code, Reply.invalid(reason).to_json())

    def unavailable(self, exc: StorageError) -> Response:
        log.warning("%s: database unavailable: %s", self.name, exc)
        body = {"status": "unavailable", "reason": f"{self.name}: database unavailable"}
        return self.respond(UNAVAILABLE, body, {"Retry-After": RETRY_AFTER_SECONDS})

    def respond(self, code: int, body: Any, headers: dict[str, str] | None = None) -> Response:
        self.codes[code] += 1
        return AsciiJson(body, status_code=code, headers=headers)
