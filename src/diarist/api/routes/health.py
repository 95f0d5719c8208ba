"""`GET /health`: whether this server can take and run jobs. No key, no secrets, cheap.

Kept in its own router so that it stays outside the API's authentication and rate limits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from diarist.errors import DiaristError
from diarist.jobs.store import Store

HealthReport = Callable[[], dict[str, Any]]  # a background part's `{ok, ...}`
router = APIRouter()


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
    """200 `{"status": "ok", "checks"}` when every check passes, else 503 with `"degraded"`."""
    state = request.app.state
    checks = {"database": database_check(state.services.store)}
    reports: dict[str, HealthReport] = state.health_reports
    checks.update({name: report() for name, report in reports.items()})
    ok = all(check["ok"] for check in checks.values())
    return JSONResponse({"status": "ok" if ok else "degraded", "checks": checks}, status_code=200 if ok else 503)
