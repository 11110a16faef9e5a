"""What the server refuses before any work: request bodies over the size limit (413) and,
when a key is set, requests without ``Authorization: Bearer <key>`` (401)."""

from __future__ import annotations

import hmac
import json
from typing import Any

from fastapi import HTTPException, Request


class BodyLimitMiddleware:
    """ASGI middleware: a body over ``max_bytes`` is answered 413.

    A ``Content-Length`` over the limit is refused before anything is read; a body without
    one (chunked) is counted as it arrives and refused when it goes past the limit.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or ()).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await _send_json(send, 413, self._detail())
            return
        seen = 0

        async def counted() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(413, self._detail())
            return message

        await self.app(scope, counted, send)

    def _detail(self) -> str:
        return f"request body over the limit of {self.max_bytes} bytes"


async def _send_json(send: Any, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BearerKey:
    """A FastAPI dependency: 401 unless the request carries ``Authorization: Bearer <key>``
    (compared in constant time); lets everything through when ``key`` is None."""

    def __init__(self, key: str | None) -> None:
        self.key = key.encode() if key else None

    async def __call__(self, request: Request) -> None:  # async: no thread hop per request
        if self.key is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.key):
            raise HTTPException(
                401, "missing or wrong API key", headers={"WWW-Authenticate": "Bearer"}
            )
