"""The services fleet tests run against (minimal copy on the shared branch; the pg branch's is the full one).

`DIARIST_TEST_REDIS` names the Redis (default redis://127.0.0.1:6379). A test whose service is
unreachable is skipped with the reason, except under CI (env `CI` set), where it fails.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

import pytest

DEFAULT_REDIS = "redis://127.0.0.1:6379"


def redis_url(db: int) -> str:
    """The test Redis, database `db`."""
    return f"{os.environ.get('DIARIST_TEST_REDIS', DEFAULT_REDIS).rstrip('/')}/{db}"


def require(service: str) -> None:
    """Skip (fail under CI) unless `service` ("redis") accepts connections."""
    url = {"redis": redis_url(0)}[service]
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname, parts.port or 6379), timeout=2).close()
    except OSError as e:
        message = f"{service} at {parts.hostname}:{parts.port} is unreachable ({e}); start it (docs/deploy.md)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
