"""The OpenAPI document, shaped like pyannoteAI's: responses the service really sends, no FastAPI 422s.

FastAPI documents a 422 for every operation with input, but every validation error here is a 400
(api/errors.py). The error answers common to many operations are added by rule, so a route cannot
forget them: 401 and 429 where a key is needed, 400 where a body or query is validated.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from diarist.api.schemas import ApiError, ValidationErrorResponse

REF = "#/components/schemas/{model}"
RATE_HEADERS = {
    "X-RateLimit-Limit": "Requests allowed per minute for this key (absent when unlimited)",
    "X-RateLimit-Remaining": "Requests left in the current minute (absent when unlimited)",
}
LIMITED_HEADERS = {
    "X-RateLimit-Reset": "When the oldest counted request leaves the window, in epoch seconds",
    "Retry-After": "Seconds to wait before the next request",
}


def _headers(described: dict[str, str]) -> dict[str, Any]:
    return {name: {"description": text, "schema": {"type": "string"}} for name, text in described.items()}


def _answer(model: str, description: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": REF.format(model=model)}}},
    }
    if headers:
        answer["headers"] = _headers(headers)
    return answer


def _takes_input(operation: dict[str, Any]) -> bool:
    """A JSON body or a query parameter: what the service validates into a 400. Path ids are looked up (404)."""
    query = any(p.get("in") == "query" for p in operation.get("parameters", []))
    return query or "application/json" in operation.get("requestBody", {}).get("content", {})


def _add_common_errors(operation: dict[str, Any]) -> None:
    responses = operation["responses"]
    responses.pop("422", None)
    if _takes_input(operation):
        responses.setdefault("400", _answer("ValidationErrorResponse", "Invalid request"))
    if operation.get("security"):
        responses.setdefault("401", _answer("ApiError", "Missing, unknown or revoked API key"))
        responses.setdefault("429", _answer("ApiError", "Too many requests", RATE_HEADERS | LIMITED_HEADERS))
        for status, answer in responses.items():
            if status.startswith("2"):
                answer.setdefault("headers", {}).update(_headers(RATE_HEADERS))
    operation["responses"] = dict(sorted(responses.items()))


def openapi_schema(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document, built once."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            description=app.description,
            routes=app.routes,
        )
        for item in schema["paths"].values():
            for operation in item.values():
                _add_common_errors(operation)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):
            components.pop(unused, None)
        for model in (ApiError, ValidationErrorResponse):
            found = model.model_json_schema(ref_template=REF, mode="serialization")
            components.update(found.pop("$defs", {}))
            components.setdefault(model.__name__, found)
        app.openapi_schema = schema
    return app.openapi_schema
