"""Request ids and one structured (JSON) log line per request.

Every response carries ``X-Request-ID``: the client's own id when it sent a sane one (so a proxy's id
follows the request through), otherwise a fresh random one. The log line names the same id, so a user's
report ("request 3f2a... failed") finds its server-side line. Server errors (5xx, or an exception that
escapes the routes) are logged at ERROR; everything else at DEBUG (`pss -v serve` shows them), which keeps
the log of a busy server to what needs attention.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("backend.api.access")

HEADER = b"x-request-id"
_SANE_ID = re.compile(rb"[A-Za-z0-9._:-]{1,64}")


class RequestLogMiddleware:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(HEADER, b"")
        request_id = given.decode() if _SANE_ID.fullmatch(given) else secrets.token_hex(8)
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (HEADER, request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            record = {
                "request_id": request_id,
                "method": scope["method"],
                "path": scope["path"],
                "status": status,
                "ms": round(1000 * (time.perf_counter() - started), 1),
            }
            log.log(logging.ERROR if status >= 500 else logging.DEBUG, "request %s", json.dumps(record))
