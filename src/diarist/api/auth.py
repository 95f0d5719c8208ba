"""Bearer keys and the per-key rate limit, as FastAPI dependencies."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass

from fastapi import Request, Response

from diarist.api.errors import ApiProblem
from diarist.jobs.store import ApiKey

WINDOW_SECONDS = 60.0


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    reset_at: float  # epoch seconds when the oldest counted request leaves the window

    def headers(self) -> dict[str, str]:
        headers = {"X-RateLimit-Limit": str(self.limit), "X-RateLimit-Remaining": str(self.remaining)}
        if not self.allowed:
            headers["X-RateLimit-Reset"] = str(math.ceil(self.reset_at))
            headers["Retry-After"] = str(max(1, math.ceil(self.reset_at - time.time())))
        return headers


class RateLimiter:
    """Sliding one-minute window per key: the times of the requests it let through."""

    def __init__(self) -> None:
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, key_id: str, limit: int) -> RateDecision:
        now = time.time()
        with self._lock:
            hits = self._hits.setdefault(key_id, deque())
            while hits and hits[0] <= now - WINDOW_SECONDS:
                hits.popleft()
            allowed = len(hits) < limit
            if allowed:
                hits.append(now)
            reset_at = (hits[0] if hits else now) + WINDOW_SECONDS
            return RateDecision(allowed, limit, max(0, limit - len(hits)), reset_at)


def bearer_token(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def current_key(request: Request, response: Response) -> ApiKey:
    """The caller's key: 401 when missing or unknown, 429 over its rate limit."""
    services = request.app.state.services
    token = bearer_token(request)
    if token is None:
        raise ApiProblem(401, "Missing API key: send 'Authorization: Bearer <key>'.")
    key = services.store.authenticate(token)
    if key is None:
        raise ApiProblem(401, "Invalid API key.")
    limit = key.rate_limit_per_minute
    if limit is None:
        limit = services.settings.rate_limit_per_minute
    if limit > 0:
        decision = services.limiter.check(key.id, limit)
        if not decision.allowed:
            raise ApiProblem(429, f"Too many requests: the limit is {limit} per minute.", decision.headers())
        response.headers.update(decision.headers())
    return key
