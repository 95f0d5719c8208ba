"""The store's core: the engine, its sessions, the database's errors as the service's, and the schema's migrations.

Writes are single statements or short write-first transactions, which keeps SQLite's one-writer lock short.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import bindparam, create_engine, event, inspect, select, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session, sessionmaker

from diarist.errors import DiaristError, StorageFullError, StoreUnavailableError
from diarist.private_files import private_dir, private_file

# SQLite primary result codes (https://sqlite.org/rescode.html) that mean "not now" rather than a bug.
SQLITE_FULL = 13
SQLITE_BUSY = (5, 6)  # busy, locked
LOCK_POLL_SECONDS = 0.001  # how often a write retries SQLite's write lock that another process holds
SQLITE_TEMPORARY = {5: "busy", 6: "locked", 10: "disk I/O error", 14: "cannot open", 15: "locking protocol"}
# PostgreSQL SQLSTATEs (https://www.postgresql.org/docs/current/errcodes-appendix.html) that mean "not now":
# connection exceptions (08), transaction rollbacks: serialization failure, deadlock (40), out of memory or
# connections (53200, 53300), lock or statement timeout (55P03, 57014), server shutting down or starting (57P0x).
PG_FULL = "53100"
PG_TEMPORARY_CLASSES = ("08", "40")
PG_TEMPORARY = {"53200", "53300", "55P03", "57014", "57P01", "57P02", "57P03", "57P05"}
MIGRATIONS = Path(__file__).parent.parent / "migrations"
MIGRATION_LOCK = 0x6469617269737400  # pg_advisory_xact_lock key ("diarist\0"): one migrating process at a time
CONNECT_TIMEOUT_SECONDS = 10  # an unreachable PostgreSQL answers 503 after this, not after the OS's minutes
BUSY = "The job database is busy or unreachable; try again shortly."


class LockWait:
    """The seconds that writes may still spend waiting for SQLite's write lock."""

    def __init__(self, seconds: float):
        self.left = seconds

    def spend(self, since: float) -> None:
        """Count the wait that began at `since` (time.monotonic())."""
        self.left = max(0.0, self.left - (time.monotonic() - since))


# The wait of the request (or the write) under way: threads that run a request's code see its context.
_lock_wait: ContextVar[LockWait | None] = ContextVar("lock_wait", default=None)


@contextmanager
def one_lock_wait(seconds: float) -> Iterator[None]:
    """Within the block, the store's writes wait for the lock `seconds` in all, not `seconds` each.

    An HTTP request runs in one: queued behind other writers, or writing several times, it still
    answers 503 after the busy timeout at most, never after a multiple of it.
    """
    token = _lock_wait.set(LockWait(seconds))
    try:
        yield
    finally:
        _lock_wait.reset(token)


@contextmanager
def database_errors() -> Iterator[None]:
    """Turn a busy, unreachable or full database into the service's typed errors."""
    try:
        yield
    except PoolTimeoutError as e:  # every pooled connection is busy for longer than the pool timeout
        raise StoreUnavailableError(BUSY) from e
    except (OperationalError, InterfaceError) as e:
        if _is_full(e.orig):
            raise StorageFullError("The server's disk is full.") from e
        if _is_temporary(e.orig):
            raise StoreUnavailableError(BUSY) from e
        raise


def _is_full(error: BaseException | None) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    return (code is not None and code & 0xFF == SQLITE_FULL) or getattr(error, "sqlstate", None) == PG_FULL


def _is_temporary(error: BaseException | None) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in SQLITE_TEMPORARY
    state = getattr(error, "sqlstate", None)
    # No code at all: the connection could not be made or was lost (refused, reset, closed by the server).
    return state is None or state.startswith(PG_TEMPORARY_CLASSES) or state in PG_TEMPORARY


def _sqlite_pragmas(engine: Engine, busy_timeout: float, own_checkpoints: bool = False) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself, below
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        if own_checkpoints:
            # The commit that fills the WAL would copy it back (with two fsyncs) while its thread
            # holds the process's write lock; `Core.checkpoint` does it from a thread of its own.
            cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        # On the sqlite3 connection itself: through SQLAlchemy each statement would cost ~50 µs of Python.
        raw = conn.connection.dbapi_connection
        wait = _lock_wait.get() or LockWait(busy_timeout)
        try:
            if not conn.get_execution_options().get("write"):
                raw.execute(f"PRAGMA busy_timeout={int(wait.left * 1000)}")
                raw.execute("BEGIN")
                return
            # Write transactions take the lock up front, so they wait for it here instead of failing later.
            raw.execute("PRAGMA busy_timeout=0")
            start = time.monotonic()
            try:
                begin_immediate(raw, wait.left)
            finally:
                wait.spend(start)
        except sqlite3.Error as e:  # as SQLAlchemy raises its own statements' errors, for database_errors
            raise DBAPIError.instance("BEGIN", None, e, sqlite3.Error) from e


def begin_immediate(connection: sqlite3.Connection, seconds: float) -> None:
    """`BEGIN IMMEDIATE` on a connection whose busy timeout is 0, retried every `LOCK_POLL_SECONDS` for
    `seconds`; then sqlite3.OperationalError (busy).

    SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20, 25 ms … between tries: a lock that another
    process (a worker) held 4 ms would cost a submit 8 ms, and one held 9 ms, 18 ms.
    """
    deadline = time.monotonic() + seconds
    while True:
        try:
            connection.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as e:
            if e.sqlite_errorcode & 0xFF not in SQLITE_BUSY or time.monotonic() >= deadline:
                raise
        time.sleep(LOCK_POLL_SECONDS)


def database_url(url: str) -> str:
    """`url` with PostgreSQL's driver made explicit: diarist speaks to PostgreSQL through psycopg 3 only.

    `postgresql://` and `postgres://` (as libpq and most hosts write them) would otherwise pick psycopg2.
    """
    parsed = make_url(url)
    if parsed.drivername in ("postgres", "postgresql"):
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    if parsed.drivername.startswith("postgresql") and parsed.drivername != "postgresql+psycopg":
        raise DiaristError(f"Unsupported PostgreSQL driver {parsed.drivername!r}: use postgresql+psycopg://.")
    return url


def make_engine(url: str, busy_timeout: float = 30.0, pool_size: int = 5, own_checkpoints: bool = False) -> Engine:
    """An engine for `url`; a write waits `busy_timeout` seconds for a lock, then fails.

    `own_checkpoints`: SQLite's commits never copy the WAL back into the database (`Core.checkpoint` must).

    On PostgreSQL the pool holds `pool_size` connections and half as many again at peaks; connections are
    pinged at checkout, so one the server dropped (restart, pg_terminate_backend) is replaced unseen.
    """
    url = database_url(url)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            # SQLite gives the -wal and -shm files the mode of the database file: 0600 covers all three.
            private_file(private_dir(Path(path).parent) / Path(path).name)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": busy_timeout})
        _sqlite_pragmas(engine, busy_timeout, own_checkpoints)
        return engine
    lock_timeout = int(busy_timeout * 1000)
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=pool_size,
        max_overflow=pool_size // 2,
        pool_timeout=busy_timeout,
        connect_args={
            "connect_timeout": CONNECT_TIMEOUT_SECONDS,
            # Like SQLite's busy timeout: a write waits this long for a row lock, then answers 503.
            "options": f"-c lock_timeout={lock_timeout}",
        },
    )


def alembic_config() -> Config:
    """Alembic's configuration for this code's migrations."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    """The Alembic revision this code's schema is at."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head() or ""


def known_revision(revision: str) -> bool:
    """Whether `revision` is one of this code's migrations (else a later release wrote it)."""
    return any(script.revision == revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions())


class RowReader:
    """One table's rows by primary key, read on a pooled DBAPI connection with SQL compiled once.

    It does what an ORM `Session.get` does for the reads that every request makes (a job, an upload)
    with about a third of the Python: no session, identity map or transaction events. On SQLite the
    SELECT runs alone, in autocommit; records come back detached, as the store's always do.
    """

    def __init__(self, engine: Engine, model: type[Any]):
        table = model.__table__
        self.engine, self.model = engine, model
        self.columns = [column.key for column in table.columns]
        self.keys = [column.key for column in table.primary_key.columns]
        query = select(*table.columns).where(*(table.c[key] == bindparam(key) for key in self.keys))
        compiled = query.compile(dialect=engine.dialect)
        self.sql, self.positions = str(compiled), compiled.positiontup  # positions: None for named parameters
        self.types = [column.type for column in table.columns]
        self.processors: list[Any] | None = None  # made from the first answer's column types (PostgreSQL's need them)

    def _processors(self, description: Any) -> list[Any]:
        """What turns each column's DBAPI value into the model's (JSON text, SQLite's datetimes, …)."""
        dialect = self.engine.dialect
        return [
            kind.dialect_impl(dialect).result_processor(dialect, column[1])
            for kind, column in zip(self.types, description, strict=True)
        ]

    def get(self, *key: Any) -> Any | None:
        """The record whose primary key is `key` (its columns in order), or None."""
        values = dict(zip(self.keys, key, strict=True))
        parameters = [values[name] for name in self.positions] if self.positions is not None else values
        dbapi = self.engine.dialect.loaded_dbapi
        with database_errors():
            try:
                connection = self.engine.raw_connection()
                try:
                    cursor = connection.cursor()
                    cursor.execute(self.sql, parameters)
                    row = cursor.fetchone()
                    if self.processors is None:
                        self.processors = self._processors(cursor.description)
                    cursor.close()
                finally:
                    connection.close()
            except dbapi.Error as e:  # as SQLAlchemy would have raised it: database_errors tells busy from bugs
                raise DBAPIError.instance(self.sql, parameters, e, dbapi.Error) from e
        if row is None:
            return None
        fields = (v if process is None else process(v) for v, process in zip(row, self.processors, strict=True))
        return self.model(**dict(zip(self.columns, fields, strict=True)))


class Core:
    """One engine and its sessions: every topic of the store reads and writes through `reading` and `writing`.

    Records come back detached, safe to keep.
    """

    def __init__(self, url: str, busy_timeout: float = 30.0, pool_size: int = 5, own_checkpoints: bool = False):
        self.engine = make_engine(url, busy_timeout, pool_size, own_checkpoints)
        self.busy_timeout = busy_timeout
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(self.engine.execution_options(write=True), expire_on_commit=False)
        self.sqlite = self.engine.dialect.name == "sqlite"
        self._write_lock = threading.Lock()  # SQLite only
        self._rows: dict[type, RowReader] = {}

    def rows(self, model: type[Any]) -> RowReader:
        """The lean reader of `model`'s rows by primary key."""
        if model not in self._rows:
            self._rows[model] = RowReader(self.engine, model)
        return self._rows[model]

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A session for reads."""
        with database_errors(), self._read() as session:
            yield session

    @contextmanager
    def writing(self) -> Iterator[Session]:
        """A session whose transaction commits when the block ends, or rolls back on an error.

        On SQLite it waits for the write lock at most the busy timeout: its own, or what is left of
        its request's (`one_lock_wait`); then StoreUnavailableError.
        """
        wait = _lock_wait.get() or LockWait(self.busy_timeout)
        token = _lock_wait.set(wait)  # for the begin hook, which sets SQLite's own wait to what is left
        try:
            with database_errors(), self._queued(wait), self._write.begin() as session:
                yield session
        finally:
            _lock_wait.reset(token)

    @contextmanager
    def _queued(self, wait: LockWait) -> Iterator[None]:
        """On SQLite, this process's writers one at a time, each waiting its turn at most `wait.left`."""
        if not self.sqlite:
            yield
            return
        # SQLite lets one writer in at a time and makes the others poll with growing sleeps; queueing
        # this process's writers on a lock first keeps their wait as short as the write itself.
        start = time.monotonic()
        if not self._write_lock.acquire(timeout=wait.left):
            raise StoreUnavailableError(BUSY)
        wait.spend(start)
        try:
            yield
        finally:
            self._write_lock.release()

    def checkpoint(self) -> tuple[int, int]:
        """On SQLite, copy the WAL's committed pages back into the database, beside the writers (they
        do not wait for it); the WAL's pages and how many of them are now copied. (0, 0) elsewhere."""
        if not self.sqlite:
            return 0, 0
        with database_errors():
            connection = self.engine.raw_connection()  # outside a transaction, which would hold it back
            try:
                _busy, pages, copied = connection.cursor().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            finally:
                connection.close()
        return pages, copied

    def ping(self) -> None:
        """Raise StoreUnavailableError unless the database answers a read."""
        with self.reading() as session:
            session.execute(select(1))

    def migrate(self, revision: str = "head") -> None:
        """Bring the schema up to an Alembic revision, the latest by default (creates it on a new database)."""
        config = alembic_config()
        with database_errors(), self.engine.begin() as connection:
            if not self.sqlite:
                # API and workers starting together would otherwise both create the tables; on SQLite
                # the write lock already lets one migration in at a time.
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            config.attributes["connection"] = connection
            command.upgrade(config, revision)

    def schema_revision(self) -> str | None:
        """The Alembic revision the database is at; None on a database never migrated."""
        with self.reading() as session:
            if not inspect(session.connection()).has_table("alembic_version"):
                return None
            return session.scalar(text("SELECT version_num FROM alembic_version"))

    def close(self) -> None:
        """Close the pool's connections."""
        self.engine.dispose()
