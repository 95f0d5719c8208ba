"""Every error leaves in the pyannoteAI shapes, and every response carries a request id.

400: `{message, errors: [{field, message}]}`; everything else: `ApiError {requestId, message}`.
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

from fastapi import FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from diarist.errors import StorageFullError, StoreUnavailableError

log = logging.getLogger("diarist.api")
REQUEST_ID_HEADER = "X-Request-Id"
STORE_RETRY_AFTER_SECONDS = 5  # a busy or unreachable job database: 503 with this Retry-After


class ApiProblem(Exception):
    """An error answered as `ApiError` with this status, message and extra headers."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


class InvalidRequest(Exception):
    """A 400 with one entry per invalid field."""

    def __init__(self, errors: list[tuple[str, str]]):
        super().__init__("; ".join(f"{f}: {m}" for f, m in errors))
        self.errors = errors


def request_id(request: Request) -> str:
    return request.scope.get("state", {}).get("request_id", "")


def error_body(rid: str, message: str) -> dict[str, str]:
    """`ApiError`: the shape of every error but 400."""
    return {"requestId": rid, "message": message}


async def deny_socket(websocket: WebSocket, status: int, message: str) -> None:
    """Refuse a WebSocket handshake with an HTTP answer in the API's error shape; a bare close where the
    server cannot send one."""
    if "websocket.http.response" not in websocket.scope.get("extensions", {}):
        await websocket.close(1008)
        return
    rid = websocket.scope.get("state", {}).get("request_id", "")
    await websocket.send_denial_response(JSONResponse(error_body(rid, message), status_code=status))


def _encodable(text: str) -> str:
    """`text` with each lone UTF-16 surrogate (JSON may escape one: "\\ud800") as U+FFFD: it has no UTF-8 form."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def invalid_body(rid: str, errors: list[tuple[str, str]]) -> dict[str, Any]:
    """The 400 shape: one `{field, message}` per invalid field; fields and messages echo the request's text."""
    return {
        "message": "Invalid request",
        "errors": [{"field": _encodable(f), "message": _encodable(m)} for f, m in errors],
        "requestId": rid,
    }


class RequestIdMiddleware:
    """Gives each request an id (`request.state.request_id`) and sends it back as `X-Request-Id`."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":  # a socket's refusals carry an id in their body
            scope.setdefault("state", {})["request_id"] = str(uuid.uuid4())
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = str(uuid.uuid4())
        scope.setdefault("state", {})["request_id"] = rid

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append((REQUEST_ID_HEADER.lower().encode(), rid.encode()))
            await send(message)

        await self.app(scope, receive, send_with_id)


def _field(loc: tuple[Any, ...]) -> str:
    """("body", "numSpeakers") -> "numSpeakers"; ("body", "voiceprints", 2, "label") -> "voiceprints[2].label";
    ("query", "limit") -> "limit"; ("body",) -> "body"."""
    field = ""
    for part in loc[1:] if len(loc) > 1 else loc:
        if isinstance(part, int):  # an item of a list field; alone, a position in the body's JSON
            field += f"[{part}]" if field else ""
        else:
            field += f".{part}" if field else str(part)
    return field or "body"


def _message(error: dict[str, Any]) -> str:
    kind = error["type"]
    if kind == "json_invalid":
        return f"Malformed JSON: {error.get('ctx', {}).get('error', 'could not parse the body')}"
    if kind == "missing":
        return "Required"
    if kind == "literal_error":
        return f"Must be one of {error['ctx']['expected']}"
    if kind in ("model_attributes_type", "dict_type"):
        if len(error["loc"]) > 1:  # a field inside the body
            return "Must be a JSON object"
        return "The body must be a JSON object, sent with Content-Type: application/json"
    if kind == "value_error":
        text = str(error["ctx"]["error"])
        return text[:1].upper() + text[1:]  # str.capitalize would lower the rest (SPEAKER_)
    return error["msg"]


def validation_body(request: Request, errors: list[tuple[str, str]]) -> dict[str, Any]:
    return invalid_body(request_id(request), errors)


def _unreadable_body(exc: StarletteHTTPException) -> str:
    """Why FastAPI could not turn the body into JSON (its 400 says only that it could not)."""
    cause = exc.__cause__
    if isinstance(cause, UnicodeDecodeError):
        return "The body is not UTF-8 text: send JSON, uncompressed"
    if isinstance(cause, RecursionError):
        return "Malformed JSON: nested too deeply"
    if isinstance(cause, ValueError):  # json.loads: an integer beyond Python's 4300-digit conversion limit
        return "Malformed JSON: a number has too many digits"
    return "The body could not be read as JSON"


_INTEGER = re.compile(r"[+-]?[0-9]+")


def _out_of_range(request: Request) -> list[tuple[str, str]]:
    """The integer query parameters beyond what the database stores (64-bit signed)."""
    errors = []
    for name, value in request.query_params.multi_items():
        if _INTEGER.fullmatch(value) and (len(value) > 20 or not -(2**63) <= int(value) < 2**63):
            errors.append((name, f"Must be between {-(2**63)} and {2**63 - 1}"))
    return errors or [("query", "A number is out of range")]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [(_field(tuple(e["loc"])), _message(e)) for e in exc.errors()]
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            errors = [(f, m) for f, m in errors if m.startswith("Malformed JSON")]
        return JSONResponse(validation_body(request, errors), status_code=400)

    @app.exception_handler(InvalidRequest)
    async def _invalid_fields(request: Request, exc: InvalidRequest) -> JSONResponse:
        return JSONResponse(validation_body(request, exc.errors), status_code=400)

    @app.exception_handler(OverflowError)
    async def _overflow(request: Request, exc: OverflowError) -> JSONResponse:
        return JSONResponse(validation_body(request, _out_of_range(request)), status_code=400)

    @app.exception_handler(ApiProblem)
    async def _problem(request: Request, exc: ApiProblem) -> JSONResponse:
        body = error_body(request_id(request), exc.message)
        return JSONResponse(body, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # FastAPI's "There was an error parsing the body"
            return JSONResponse(validation_body(request, [("body", _unreadable_body(exc))]), status_code=400)
        message = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, str(exc.detail))
        body = error_body(request_id(request), message)
        return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(StoreUnavailableError)
    async def _store_unavailable(request: Request, exc: StoreUnavailableError) -> JSONResponse:
        body = error_body(request_id(request), str(exc))
        return JSONResponse(body, status_code=503, headers={"Retry-After": str(STORE_RETRY_AFTER_SECONDS)})

    @app.exception_handler(StorageFullError)
    async def _storage_full(request: Request, exc: StorageFullError) -> JSONResponse:
        return JSONResponse(error_body(request_id(request), str(exc)), status_code=507)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        rid = request_id(request)
        log.exception("request %s failed", rid)
        # Answered by api/guard.py inside the middleware stack (RequestIdMiddleware adds the id header), not
        # by Starlette's ServerErrorMiddleware, which raises again so that uvicorn drops the connection.
        return JSONResponse(error_body(rid, "Internal server error"), status_code=500)
