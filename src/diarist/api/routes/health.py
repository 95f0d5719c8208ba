"""`GET /health`: whether this server can take and run jobs. Cheap, and no secrets.

Kept in its own router so that it stays outside the API's keys and rate limits. Also what the
operators' endpoints share: the `ops_token` check and the cache that keeps their database reads
off the request path.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from diarist.api.auth import bearer_token
from diarist.api.errors import ApiProblem
from diarist.errors import DiaristError
from diarist.jobs.store import Store

HealthReport = Callable[[], dict[str, Any]]  # a background part's `{ok, ...}`
T = TypeVar("T")
router = APIRouter()


class Cached(Generic[T]):
    """A value computed at most once per `seconds`, so that callers in between cost nothing.

    One caller computes; those arriving meanwhile get the last value (or, before the first one
    exists, wait for it) instead of each starting their own computation.
    """

    def __init__(self, compute: Callable[[], T], seconds: float):
        self.compute, self.seconds = compute, seconds
        self._lock = threading.Lock()
        self._last: tuple[float, T] | None = None  # (monotonic time computed, value): replaced whole

    def get(self) -> T:
        last = self._last
        if last is not None and time.monotonic() - last[0] < self.seconds:
            return last[1]
        if not self._lock.acquire(blocking=last is None):
            return last[1]  # type: ignore[index]  # only a call that has a last value does not block
        try:
            last = self._last
            if last is None or time.monotonic() - last[0] >= self.seconds:
                last = self._last = (time.monotonic(), self.compute())
            return last[1]
        finally:
            self._lock.release()


def operator(request: Request) -> bool:
    """Whether the request may see what is for operators: anyone's when no `ops_token` is set, else only
    one that sends it as a bearer token.

    Wrong tokens count on the address's failure limit, as wrong keys do (ApiProblem 429 past it); a
    request without one does not, so that a load balancer's probes never block its address.
    """
    services = request.app.state.services
    settings, failures = services.settings, services.failures
    if settings.ops_token is None:
        return True
    token = bearer_token(request.headers.get("authorization", ""))
    if token is None:
        return False
    client, per_client = request.client.host if request.client else "", settings.auth_failures_per_minute
    blocked = failures.peek(client, per_client) if per_client > 0 else None
    if blocked is not None and not blocked.allowed:
        raise ApiProblem(
            429, "Too many wrong tokens from this address; try again later.", {"Retry-After": blocked.retry_after}
        )
    if hmac.compare_digest(token.encode(), settings.ops_token.get_secret_value().encode()):
        return True
    if per_client > 0:
        failures.check(client, per_client)
    return False


def database_check(store: Store) -> dict[str, Any]:
    """`{ok, error}` of one read from the job database."""
    try:
        store.ping()
    except DiaristError as e:
        return {"ok": False, "error": str(e)}
    except Exception as e:  # a health check reports, it does not crash
        return {"ok": False, "error": type(e).__name__}
    return {"ok": True, "error": None}


@router.get("/health", include_in_schema=False)
def health(request: Request) -> JSONResponse:
    """200 `{"status": "ok", "checks"}` when every check passes, else 503 with `"degraded"`; the checks
    only for an `operator`. The database's check is at most `ops_cache_seconds` old."""
    state = request.app.state
    checks = {"database": state.database_check.get()}
    reports: dict[str, HealthReport] = state.health_reports
    checks.update({name: report() for name, report in reports.items()})
    ok = all(check["ok"] for check in checks.values())
    body = {"status": "ok" if ok else "degraded"} | ({"checks": checks} if operator(request) else {})
    return JSONResponse(body, status_code=200 if ok else 503)
