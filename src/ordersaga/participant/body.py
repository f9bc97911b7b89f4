"""Request bodies at the HTTP edge: read whole within a deadline and a size limit, then parsed as
strict JSON (no ``NaN``, no ``Infinity``, UTF-8 only), each failure a short reason.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import Request

__all__ = ["BODY_TIMEOUT_SECONDS", "read_body"]

#: A request body must arrive whole within this many seconds of its headers, else 408.
BODY_TIMEOUT_SECONDS = 30.0


async def read_body(
    request: Request, limit: int, deadline: float = BODY_TIMEOUT_SECONDS
) -> bytes | None:
    """The request body, or ``None`` as soon as it is known to exceed ``limit`` bytes.

    Raises ``TimeoutError`` when it is not complete within ``deadline`` seconds, and starlette's
    ``ClientDisconnect`` when the client goes away first.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async with asyncio.timeout(deadline):
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
    return b"".join(chunks)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(raw: bytes) -> Any:
    """Strict JSON from UTF-8 bytes; ValueError (with a short reason) for anything else."""
    if not raw.strip():
        raise ValueError("the body is empty; send the payload as a JSON object")
    try:
        text = raw.decode("utf-8")
        return json.loads(text, parse_constant=_no_constants)
    except UnicodeDecodeError:
        raise ValueError("the body is not UTF-8") from None
    except RecursionError:
        raise ValueError("the body is nested too deeply") from None
    except ValueError as exc:  # json.JSONDecodeError, and integers too long to convert
        raise ValueError(str(exc).split("\n", 1)[0]) from None
