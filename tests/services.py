"""Real PostgreSQL and Redis for the tests: fresh databases per use, and a skip (or, under CI, a
failure) with a clear reason when a service is not running."""

from __future__ import annotations

import os
import secrets
import socket
from urllib.parse import urlsplit

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

POSTGRES_ADMIN = os.environ.get("DIARIST_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("DIARIST_TEST_REDIS", "redis://127.0.0.1:6379")
RABBITMQ = os.environ.get("DIARIST_TEST_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672//")
ADDRESSES = {"postgres": POSTGRES_ADMIN, "redis": REDIS, "rabbitmq": RABBITMQ}


def _reachable(url: str) -> bool:
    parts = urlsplit(url.replace("+psycopg", ""))
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), timeout=2):
            return True
    except OSError:
        return False


def require(service: str) -> None:
    """Skip the test when `service` (postgres, redis, rabbitmq) is not reachable; fail instead under CI."""
    url = ADDRESSES[service]
    if _reachable(url):
        return
    message = f"{service} is not reachable at {url} (start it as docs/deploy.md says)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def postgres_url(tmp_name: str) -> str:
    """A fresh, empty PostgreSQL database named after `tmp_name`; its URL."""
    require("postgres")
    name = f"diarist_{''.join(c if c.isalnum() else '_' for c in tmp_name.lower())[:30]}_{secrets.token_hex(4)}"
    admin = create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(POSTGRES_ADMIN).set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    """Drop a database made by `postgres_url`, closing whatever still connects to it."""
    name = make_url(url).database
    admin = create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def redis_url(db: int) -> str:
    """The test Redis, database `db`."""
    require("redis")
    return f"{REDIS.rstrip('/')}/{db}"
