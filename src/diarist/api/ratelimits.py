"""Rate limits kept in Redis, so that every API replica counts the same hits.

The `limits` library's moving window: the time of each counted hit in a Redis list per name, trimmed
and counted by a Lua script, so two replicas answering the same key see one window. Without Redis
(`Settings.shared_redis` is None) each process keeps its own window in memory (`auth.RateLimiter`).

Redis down: requests are let through without limits and without rate-limit headers (fail open),
a warning is logged, and /health reports the `rateLimits` check as failed. Refusing every request
because a cache is away would turn a Redis outage into an API outage; the quotas of audio hours,
which cost money, are in the database and still hold.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from limits import RateLimitItemPerMinute
from limits.errors import StorageError
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter

from diarist.api.auth import WINDOW_SECONDS, Limiter, RateDecision, RateLimiter
from diarist.net import redact_url
from diarist.settings import Settings

log = logging.getLogger("diarist.api")
KEY_PREFIX = "diarist"  # every Redis key the limits write starts with it
SOCKET_TIMEOUT = 1.0  # seconds a request may wait for Redis before it is let through unlimited
RETRY_SECONDS = 5.0  # after a failure, requests skip Redis this long rather than each wait for it


class RedisRateLimiter:
    """The moving one-minute window of each name under `scope` ("key", "client"), in Redis."""

    blocking = True

    def __init__(self, storage: RedisStorage, scope: str, where: str):
        self.storage, self.scope, self.where = storage, scope, where
        self._window = MovingWindowRateLimiter(storage)
        self._lock = threading.Lock()
        self._skip_until = 0.0  # time.monotonic() before which Redis is not asked

    def check(self, name: str, limit: int) -> RateDecision | None:
        """Whether one more hit fits under `limit` (a hit that fits is counted); None while Redis is away."""
        return self._decide(name, limit, count=True)

    def peek(self, name: str, limit: int) -> RateDecision | None:
        """Whether one more hit would fit, counting nothing; None while Redis is away."""
        return self._decide(name, limit, count=False)

    def _decide(self, name: str, limit: int, count: bool) -> RateDecision | None:
        if time.monotonic() < self._skip_until:
            return None
        item = RateLimitItemPerMinute(limit, namespace=self.scope)
        try:
            counted = self._window.hit(item, name) if count else None
            stats = self._window.get_window_stats(item, name)
        except StorageError as e:
            self._failed(e.storage_error)
            return None
        allowed = counted if counted is not None else stats.remaining > 0
        remaining = max(0, stats.remaining)
        # An empty window resets a whole window from now, as the in-memory limiter says.
        reset_at = stats.reset_time if remaining < limit else time.time() + WINDOW_SECONDS
        return RateDecision(allowed, limit, remaining, reset_at)

    def _failed(self, error: Exception) -> None:
        with self._lock:
            if time.monotonic() < self._skip_until:  # another thread logged this outage already
                return
            self._skip_until = time.monotonic() + RETRY_SECONDS
        log.warning(
            "Redis at %s failed (%s: %s): %s rate limits are not enforced; trying it again in %g s",
            self.where,
            type(error).__name__,
            error,
            self.scope,
            RETRY_SECONDS,
        )

    def report(self) -> dict[str, Any]:
        """`{ok, error}` of one ping; a successful one ends the pause after a failure at once."""
        if self.storage.check():
            self._skip_until = 0.0
            return {"ok": True, "error": None}
        return {"ok": False, "error": f"Redis at {self.where} is unreachable: rate limits are not enforced"}


def make_limiters(settings: Settings) -> tuple[Limiter, Limiter]:
    """(per API key, per client address for requests without a valid key): in Redis when one is configured."""
    url = settings.shared_redis
    if url is None:
        return RateLimiter(), RateLimiter()
    storage = RedisStorage(
        url,
        key_prefix=KEY_PREFIX,
        wrap_exceptions=True,
        socket_timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=SOCKET_TIMEOUT,
    )
    where = redact_url(url)
    return RedisRateLimiter(storage, "key", where), RedisRateLimiter(storage, "client", where)
