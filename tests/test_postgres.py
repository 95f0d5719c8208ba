"""PostgreSQL's failures, caused for real, come out of the store as the service's typed errors."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from diarist.errors import DiaristError, StorageFullError, StoreUnavailableError
from diarist.jobs.store import Store, database_errors, database_url, head_revision
from diarist.jobs.tables import PENDING, Job

from . import services

pytestmark = pytest.mark.fleet


@pytest.fixture
def pg_url(request) -> Iterator[str]:
    url = services.postgres_url(request.node.name)
    yield url
    services.drop_database(url)


@pytest.fixture
def store(pg_url) -> Iterator[Store]:
    s = Store(pg_url, busy_timeout=1.0)
    s.migrate()
    yield s
    s.close()


def terminate_connections(url: str) -> int:
    """pg_terminate_backend on every connection to the database of `url`; how many there were."""
    admin = create_engine(services.POSTGRES, poolclass=NullPool)
    database = make_url(url).database
    try:
        with admin.connect() as connection:
            return len(
                connection.execute(
                    text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d"), {"d": database}
                ).all()
            )
    finally:
        admin.dispose()


def test_a_connection_terminated_between_two_calls_is_replaced(store, pg_url):
    key = store.create_key("k").record
    assert terminate_connections(pg_url) >= 1
    assert store.get_key(key.id) is not None  # the pool's pre-ping found the dead connection and reconnected


def test_a_connection_terminated_inside_a_transaction_is_a_store_unavailable_error(store, pg_url):
    with pytest.raises(StoreUnavailableError), store.reading() as session:
        session.execute(select(1))
        terminate_connections(pg_url)
        session.execute(select(1))
    assert store.list_keys() == []  # and the next call works again


def test_an_unreachable_database_is_a_store_unavailable_error():
    store = Store("postgresql+psycopg://postgres@127.0.0.1:1/none")
    with pytest.raises(StoreUnavailableError, match="busy or unreachable"):
        store.ping()
    with pytest.raises(StoreUnavailableError, match="busy or unreachable"):  # the lean reads too
        store.get_job("j")


def test_a_write_waiting_too_long_for_a_row_lock_is_a_store_unavailable_error(store):
    key = store.create_key("k").record
    store.create_job("j", key.id, "diarize", {"url": "media://x"}, status=PENDING)
    locked, release = threading.Event(), threading.Event()

    def hold_row() -> None:
        with store.writing() as session:
            session.execute(select(Job).where(Job.id == "j").with_for_update())
            locked.set()
            release.wait(30)

    holder = threading.Thread(target=hold_row)
    holder.start()
    try:
        assert locked.wait(30)
        with pytest.raises(StoreUnavailableError):  # after busy_timeout (1 s), not never
            store.cancel_job("j", key.id)
    finally:
        release.set()
        holder.join(30)
    assert store.cancel_job("j", key.id).status == "canceled"


def test_claims_skip_a_job_another_transaction_holds(store):
    key = store.create_key("k").record
    for name in ("a", "b"):
        store.create_job(name, key.id, "diarize", {"url": "media://x"}, status=PENDING)
    with store.writing() as session:
        session.execute(select(Job).where(Job.id == "a").with_for_update())
        other = Store(store.engine.url.render_as_string(hide_password=False), busy_timeout=1.0)
        assert other.claim_job("w").id == "b"  # at once, not after waiting for the lock on "a"
        assert other.claim_job("w") is None
        other.close()


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (psycopg.errors.DiskFull, StorageFullError),
        (psycopg.errors.SerializationFailure, StoreUnavailableError),
        (psycopg.errors.DeadlockDetected, StoreUnavailableError),
        (psycopg.errors.AdminShutdown, StoreUnavailableError),
        (psycopg.errors.TooManyConnections, StoreUnavailableError),
    ],
)
def test_postgres_states_that_mean_not_now_become_typed_errors(error, expected):
    # Disk full and deadlocks cannot be caused on a shared server in a test; their SQLSTATEs can.
    with pytest.raises(expected), database_errors():
        raise OperationalError("statement", {}, error("from the server"))


def test_a_real_error_stays_an_error():
    with pytest.raises(OperationalError), database_errors():
        raise OperationalError("statement", {}, psycopg.errors.DataCorrupted("bad page"))


def test_postgres_urls_use_psycopg_3():
    assert database_url("postgresql://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    assert database_url("postgres://h/db") == "postgresql+psycopg://h/db"
    assert database_url("sqlite:///x.db") == "sqlite:///x.db"
    with pytest.raises(DiaristError, match="use postgresql\\+psycopg://"):
        database_url("postgresql+psycopg2://h/db")


def test_processes_starting_together_migrate_one_at_a_time(pg_url):
    stores = [Store(pg_url) for _ in range(4)]
    errors: list[BaseException] = []
    start = threading.Barrier(len(stores))

    def migrate(store: Store) -> None:
        start.wait()
        try:
            store.migrate()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=migrate, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []  # without the advisory lock, all but one fail to create the tables
    assert {s.schema_revision() for s in stores} == {head_revision()}
    for s in stores:
        s.close()
