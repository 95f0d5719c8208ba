"""The edge of the app: what every request passes before a route sees it, and every answer on its way out.

- Every path under /v1/ and /v2/ but the pre-signed media URLs needs a key (unknown paths too). It is
  checked from the headers alone, before anything reads the body: a client without a key cannot make
  the server hold its body.
- Bodies are capped at `max_json_bytes` (media uploads have their own limit) and must keep arriving:
  a pause over `body_idle_timeout`, or less than `body_min_rate` bytes/s over a `body_rate_window`,
  ends the request with a 408.
- An answer sent before the body was read closes the connection, so the server does not read the rest.
- Every response to an admitted key carries the key's rate-limit headers, errors included.
- WebSockets: only a live stream's socket path is served (its token is its permission, checked by
  the route); any other is refused at the handshake with a 404 in the API's error shape.
- Errors raised here, and crashes, are answered with the app's exception handlers and not raised
  further: Starlette's ServerErrorMiddleware raises a crash again, and uvicorn then drops the connection.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time

import anyio
from fastapi import Request, WebSocket
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from diarist.api.auth import KEY_STATE, admit, bearer_token
from diarist.api.errors import ApiProblem, deny_socket
from diarist.api.services import Services
from diarist.jobs.store import one_lock_wait
from diarist.settings import Settings

log = logging.getLogger("diarist.api")
KEYED_PATHS = ("/v1/", "/v2/")
UPLOAD_PATH = "/v1/media/upload/"  # the one body that is a file, not JSON; the route enforces max_input_bytes
PRESIGNED_PATHS = (UPLOAD_PATH, "/v1/media/download/")  # the signed URL is the permission
LIVE_SOCKET = re.compile(r"/v1/live/[^/]+/socket")  # the only WebSocket path


def needs_key(path: str) -> bool:
    """Whether a request to `path` must carry a key; the routes read it through `current_key`."""
    return path.startswith(KEYED_PATHS) and not path.startswith(PRESIGNED_PATHS)


class Exchange:
    """One request on its way through the guard: its body coming in, its response going out."""

    def __init__(self, scope: Scope, receive: Receive, send: Send, settings: Settings):
        self._receive, self._send, self.settings = receive, send, settings
        headers = Headers(scope=scope)
        self.declared_length = int(headers.get("content-length") or 0)  # the HTTP parser checked the digits
        self.body_pending = self.declared_length > 0 or "transfer-encoding" in headers
        self.body_limit = None if scope["path"].startswith(UPLOAD_PATH) else settings.max_json_bytes
        self.received = 0
        self.window_start, self.window_bytes = time.monotonic(), 0
        self.response_started = False
        self.extra_headers: list[tuple[bytes, bytes]] = []

    async def receive(self) -> Message:
        """The next body piece, or HTTPException 408 (too slow) or 413 (too large)."""
        if not self.body_pending or self.response_started:
            return await self._receive()
        idle = self.settings.body_idle_timeout
        try:
            with anyio.fail_after(idle):
                message = await self._receive()
        except TimeoutError:
            raise HTTPException(408, f"The request body stopped arriving for {idle:g} s.") from None
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.body_pending = False
        self._count(len(message.get("body", b"")))
        return message

    def _count(self, size: int) -> None:
        self.received += size
        if self.body_limit is not None and self.received > self.body_limit:
            raise HTTPException(413, f"The request body is larger than the {self.body_limit} bytes limit.")
        self.window_bytes += size
        now = time.monotonic()
        elapsed = now - self.window_start
        if elapsed >= self.settings.body_rate_window:
            rate = self.settings.body_min_rate
            if self.body_pending and self.window_bytes < rate * elapsed:
                raise HTTPException(408, f"The request body arrived slower than {rate} bytes/s.")
            self.window_start, self.window_bytes = now, 0

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.response_started = True
            headers = [*message.get("headers", []), *self.extra_headers]
            if self.body_pending:  # answered without reading the body: the rest is not worth reading
                headers.append((b"connection", b"close"))
            message = {**message, "headers": headers}
        await self._send(message)


class EdgeGuard:
    """Pure ASGI middleware (it never buffers a body); it sits inside RequestIdMiddleware."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            if LIVE_SOCKET.fullmatch(scope["path"]):
                await self._guard_socket(scope, receive, send)
            else:
                await deny_socket(WebSocket(scope, receive, send), 404, "Not found")
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        services: Services = scope["app"].state.services
        exchange = Exchange(scope, receive, send, services.settings)
        try:
            # However many writes the request makes, and however many writers it queues behind, it
            # answers 503 after the busy timeout at most.
            with one_lock_wait(services.settings.database_busy_timeout_seconds):
                await self._admit(scope, exchange, services)
                await self.app(scope, exchange.receive, exchange.send)
        except Exception as exc:
            await self._fail(scope, exchange, exc)

    async def _guard_socket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A crash before the handshake is answered as a 500; after it, the socket closes with 1011."""
        accepted = False

        async def sending(message: Message) -> None:
            nonlocal accepted
            accepted = accepted or message["type"] in ("websocket.accept", "websocket.http.response.start")
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception:
            log.exception("live socket %s failed", scope["path"])
            if not accepted:
                await deny_socket(WebSocket(scope, receive, send), 500, "Internal server error")
            else:
                with contextlib.suppress(Exception):
                    await send({"type": "websocket.close", "code": 1011})

    async def _admit(self, scope: Scope, exchange: Exchange, services: Services) -> None:
        """Key and rate limits, then the declared body size; raises ApiProblem."""
        if needs_key(scope["path"]):
            client = scope["client"][0] if scope.get("client") else ""
            authorization = Headers(scope=scope).get("authorization", "")
            token = bearer_token(authorization)
            limits_wait = services.limiter.blocking or services.failures.blocking
            held = None if limits_wait or token is None else services.keys.fresh(token)
            if held is None:
                key, headers = await run_in_threadpool(admit, services, client, authorization)
            else:  # nothing in it waits (the key held, limits in memory): a thread would cost more than the check
                key, headers = admit(services, client, authorization, held)
            scope.setdefault("state", {})[KEY_STATE] = key
            exchange.extra_headers = [(name.lower().encode(), value.encode()) for name, value in headers.items()]
        limit = exchange.body_limit
        if limit is not None and exchange.declared_length > limit:
            raise ApiProblem(413, f"The request body is larger than the {limit} bytes limit.")

    async def _fail(self, scope: Scope, exchange: Exchange, exc: Exception) -> None:
        """Answer with the app's (async) handler for `exc`; a crash has the `Exception` one, a 500."""
        if exchange.response_started:  # too late for an answer: uvicorn closes the connection
            log.error("request %s failed during its response", scope["state"]["request_id"], exc_info=exc)
            return
        handlers = scope["app"].exception_handlers
        handler = next(handlers[c] for c in type(exc).__mro__ if c in handlers)
        response = await handler(Request(scope), exc)
        await response(scope, exchange.receive, exchange.send)
