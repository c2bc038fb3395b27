"""Request body size caps, enforced while the body streams in (also for chunked bodies without
Content-Length), answered as a JSON 413 that the client can actually read."""

from __future__ import annotations

import json

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# After the cap is crossed the rest of the body is read and thrown away (up to this many more bytes), so a
# client still busy sending gets to read the 413 instead of a connection reset.
DRAIN_LIMIT = 64 * 1024 * 1024


class BodyTooLarge(HTTPException):
    """An HTTPException so FastAPI's body parsing re-raises it instead of turning it into a 400."""

    def __init__(self, limit: int):
        super().__init__(status_code=413, detail=f"request body too large: at most {limit} bytes are accepted")


class BodyLimitMiddleware:
    """Caps request bodies: ``limits`` maps an exact path to its cap; other paths get ``default``."""

    def __init__(self, app: ASGIApp, default: int, limits: dict[str, int]):
        self.app = app
        self.default = default
        self.limits = limits

    def _limit(self, path: str) -> int:
        return self.limits.get(path.rstrip("/") or "/", self.default)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope["path"])
        declared = _content_length(scope)
        state = {"received": 0, "exceeded": False, "finished": False, "started": False}

        async def limited_receive() -> Message:
            if declared is not None and declared > limit:
                state["exceeded"] = True
                raise BodyTooLarge(limit)
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                state["finished"] = not message.get("more_body", False)
                if state["received"] > limit:
                    state["exceeded"] = True
                    raise BodyTooLarge(limit)
            return message

        async def draining_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["started"] = True
                if state["exceeded"] and not state["finished"]:
                    await _drain(receive)
            await send(message)

        try:
            await self.app(scope, limited_receive, draining_send)
        except BodyTooLarge as exc:
            # raised where no exception handler runs (e.g. a streaming read outside a route)
            if state["started"]:
                raise
            await _drain(receive)
            body = json.dumps({"detail": exc.detail}).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 413, "headers": headers})
            await send({"type": "http.response.body", "body": body})


async def _drain(receive: Receive) -> None:
    drained = 0
    while drained <= DRAIN_LIMIT:
        message = await receive()
        if message["type"] != "http.request":
            return
        drained += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
