"""The real services the fleet tests use: fresh PostgreSQL databases, Redis databases, RabbitMQ.

Where a service does not answer, its tests skip with the reason; under CI (`CI` set) they fail
instead, so that CI can never pass by skipping them. `scripts/services` starts all three.
A test that reaches one must carry the `fleet` mark, which keeps it out of the fast tiers.
Addresses: `DIARIST_TEST_POSTGRES` (an admin URL that may CREATE and DROP databases),
`DIARIST_TEST_REDIS`, `DIARIST_TEST_RABBITMQ`.
"""

from __future__ import annotations

import os
import secrets
import socket
from functools import cache

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

POSTGRES = os.environ.get("DIARIST_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("DIARIST_TEST_REDIS", "redis://127.0.0.1:6379")
RABBITMQ = os.environ.get("DIARIST_TEST_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672//")
ADDRESSES = {"postgresql": POSTGRES, "redis": REDIS, "rabbitmq": RABBITMQ}
DEFAULT_PORTS = {"postgresql": 5432, "redis": 6379, "rabbitmq": 5672}


# The test now running, set by conftest.py: `require` checks its marks.
running: pytest.Item | None = None


@cache
def unreachable(service: str) -> str | None:
    """Why `service` cannot be used (it does not accept connections), or None when it can."""
    url = make_url(ADDRESSES[service])
    host, port = url.host or "127.0.0.1", url.port or DEFAULT_PORTS[service]
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError as e:
        return f"{service} is not answering at {host}:{port} ({e.strerror or e}); scripts/services starts it"
    return None


def require(service: str) -> None:
    """Skip the calling test when `service` is unreachable; under CI, fail it instead.

    Fail it, whether or not the service answers, when it lacks the `fleet` mark: otherwise
    `-m "not fleet"` would still reach the shared services on a machine that has them.
    """
    if running is not None and running.get_closest_marker("fleet") is None:
        pytest.fail(f"{running.nodeid} uses {service}: mark it `fleet` (pytest.mark.fleet, or on the fixture param)")
    reason = unreachable(service)
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must not skip it)")
    pytest.skip(reason)


def _admin(statement: str) -> None:
    """Run one CREATE or DROP DATABASE, which cannot run inside a transaction."""
    engine = create_engine(POSTGRES, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with engine.connect() as connection:
            connection.execute(text(statement))
    finally:
        engine.dispose()


def postgres_url(tmp_name: str) -> str:
    """Create a fresh, empty database named after `tmp_name` (plus a random suffix); its URL."""
    require("postgresql")
    stem = "".join(c if c.isalnum() else "_" for c in tmp_name.lower())[:40]
    name = f"diarist_test_{stem}_{secrets.token_hex(4)}"
    _admin(f'CREATE DATABASE "{name}"')
    return make_url(POSTGRES).set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    """Drop a database made by `postgres_url`, ending whatever connections are still open to it."""
    _admin(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')


# Each user of the test Redis server gets a database of its own. Workers take every message on
# their queues, so a worker of one cluster left running beside another (the session-wide API
# suite beside the fleet tests) would take the other's jobs, find no such job in its own
# PostgreSQL database, and leave them pending until they are re-published.
REDIS_DATABASES = {
    "ops": 1,
    "api_suite": 2,
    "shared": 3,
    "fleet": 4,
    "publish": 5,
    "live_suite": 6,
    "live_replicas": 7,
    "handon": 8,
    "chaosnetns": 12,
    "chaosredis": 13,
    "chaospg": 14,
    "chaosburst": 15,
}
assert len(set(REDIS_DATABASES.values())) == len(REDIS_DATABASES)


def redis_url(user: str) -> str:
    """The test Redis server's database reserved for `user` (a key of `REDIS_DATABASES`)."""
    require("redis")
    return f"{REDIS.rstrip('/')}/{REDIS_DATABASES[user]}"
