"""Bearer keys and rate limits: who may call, and how often.

The edge guard (api/guard.py) runs `admit` from the headers alone, before anything reads the body;
the routes then get the admitted key through the `current_key` dependency.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from fastapi import Request

from diarist.api.errors import ApiProblem
from diarist.jobs.store import Store, admits, id_of_key
from diarist.jobs.tables import ApiKey

if TYPE_CHECKING:
    from diarist.api.services import Services

WINDOW_SECONDS = 60.0
KEY_STATE = "api_key"  # where the guard leaves the admitted key in the request scope's state
# A limiter forgets names idle for a whole window once it holds this many (then twice as many as remain).
SWEEP_AT = 10_000


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    reset_at: float  # epoch seconds when the oldest counted request leaves the window

    @property
    def retry_after(self) -> str:
        return str(max(1, math.ceil(self.reset_at - time.time())))

    def headers(self) -> dict[str, str]:
        headers = {"X-RateLimit-Limit": str(self.limit), "X-RateLimit-Remaining": str(self.remaining)}
        if not self.allowed:
            headers["X-RateLimit-Reset"] = str(math.ceil(self.reset_at))
            headers["Retry-After"] = self.retry_after
        return headers


class Limiter(Protocol):
    """Counts hits per name in a sliding minute; None: it cannot tell now (its store is away), let the hit through."""

    blocking: bool  # whether a check waits on another server (Redis)

    def check(self, name: str, limit: int) -> RateDecision | None: ...

    def peek(self, name: str, limit: int) -> RateDecision | None: ...


class RateLimiter:
    """Sliding one-minute window per name (a key id, a client address): the times of the hits it counted."""

    blocking = False

    def __init__(self) -> None:
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._sweep_at = SWEEP_AT

    def check(self, name: str, limit: int) -> RateDecision:
        """Whether one more hit fits under `limit`; a hit that fits is counted."""
        return self._decide(name, limit, count=True)

    def peek(self, name: str, limit: int) -> RateDecision:
        """Whether one more hit would fit, counting nothing."""
        return self._decide(name, limit, count=False)

    def _decide(self, name: str, limit: int, count: bool) -> RateDecision:
        now = time.time()
        with self._lock:
            if len(self._hits) >= self._sweep_at:
                # Many names (client addresses) come and go: forget the idle ones so memory stays bounded.
                self._hits = {n: h for n, h in self._hits.items() if h and h[-1] > now - WINDOW_SECONDS}
                self._sweep_at = max(SWEEP_AT, 2 * len(self._hits))
            hits = self._hits.setdefault(name, deque())
            while hits and hits[0] <= now - WINDOW_SECONDS:
                hits.popleft()
            allowed = len(hits) < limit
            if allowed and count:
                hits.append(now)
            reset_at = (hits[0] if hits else now) + WINDOW_SECONDS
            return RateDecision(allowed, limit, max(0, limit - len(hits)), reset_at)


class KeyCache:
    """The key records this process read in the last `seconds`, so that most requests are admitted without
    reading the store: a key revoked meanwhile is refused here `seconds` later at most.

    Only keys that exist are held, so made-up ids cannot fill it; a presented key is checked against its
    record's hash every time.
    """

    def __init__(self, store: Store, seconds: float):
        self.store, self.seconds = store, seconds
        self._records: dict[str, tuple[ApiKey, float]] = {}  # key id: (record, time.monotonic() when read)

    def fresh(self, key: str) -> ApiKey | None:
        """The record of a presented key if one read under `seconds` ago is held (no read); else None."""
        key_id = id_of_key(key)
        held = None if key_id is None else self._records.get(key_id)
        if held is None or time.monotonic() - held[1] >= self.seconds:
            return None
        return held[0]

    def authenticate(self, key: str, held: ApiKey | None = None) -> ApiKey | None:
        """The live record of a presented key, or None; `held`: what `fresh` answered for it, checked
        as it is. Blocking: it reads the store unless a record is held."""
        record = held if held is not None else self.fresh(key)
        key_id = id_of_key(key)
        if record is None and key_id is not None:
            record = self.store.get_key(key_id)
            if record is not None:
                self._records[key_id] = (record, time.monotonic())
        return record if record is not None and admits(record, key) else None


def bearer_token(authorization: str) -> str | None:
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def admit(
    services: Services, client: str, authorization: str, held: ApiKey | None = None
) -> tuple[ApiKey, dict[str, str]]:
    """The caller's key and the rate-limit headers for its response, from the `Authorization` header;
    `held`: the record the key cache holds for it (`KeyCache.fresh`), checked instead of reading one.

    Raises ApiProblem: 429 when `client` (an address) sent too many requests without a valid key in the
    last minute, which bounds key guessing; 401 for a missing or unknown key; 429 over the key's own
    limit. Blocking: it reads the store (unless the key cache holds the key) and Redis when the limits
    are kept there. A limiter that cannot tell (Redis away) lets the request through without rate-limit
    headers.
    """
    settings, failures = services.settings, services.failures
    per_client = settings.auth_failures_per_minute
    if per_client > 0:
        blocked = failures.peek(client, per_client)
        if blocked is not None and not blocked.allowed:
            message = "Too many requests without a valid API key from this address; try again later."
            raise ApiProblem(429, message, {"Retry-After": blocked.retry_after})
    token = bearer_token(authorization)
    key = None if token is None else services.keys.authenticate(token, held)
    if key is None:
        if per_client > 0:
            failures.check(client, per_client)
        if token is None:
            raise ApiProblem(401, "Missing API key: send 'Authorization: Bearer <key>'.")
        raise ApiProblem(401, "Invalid API key.")
    limit = key.rate_limit_per_minute
    if limit is None:
        limit = settings.rate_limit_per_minute
    if limit <= 0:
        return key, {}
    decision = services.limiter.check(key.id, limit)
    if decision is None:
        return key, {}
    if not decision.allowed:
        raise ApiProblem(429, f"Too many requests: the limit is {limit} per minute.", decision.headers())
    return key, decision.headers()


async def current_key(request: Request) -> ApiKey:
    """The caller's key, which the edge guard admitted before the route read anything."""
    return request.scope["state"][KEY_STATE]
