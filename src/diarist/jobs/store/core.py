"""The job store: API keys, jobs, uploads and pending webhooks, in one SQL database.

The database is also the queue: workers claim `pending` jobs with one atomic UPDATE, so any
number of worker processes (here, or on other machines against PostgreSQL) never run a job
twice. Writes are single statements or short write-first transactions, which keeps SQLite's
one-writer lock short.

Leases and fencing: a claim sets `heartbeat_at` and increments `attempts`, which is the run's
fencing token. The running worker refreshes `heartbeat_at` (`heartbeat`), and every write of the
run (progress, audio reservation, finish) is conditional on (status running, attempts == token):
once the job was canceled, or re-queued by `reap_expired` after its lease expired and claimed
again, the old run can write nothing. The database, not the broker, decides who runs a job.
Lease times are each process's own clock: hosts of a fleet keep theirs in sync (NTP); a clock
ahead by more than a lease only makes jobs run again needlessly, never end twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import (
    create_engine,
    delete,
    event,
    func,
    inspect,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session, sessionmaker

from diarist.audio import Peaks
from diarist.errors import DiaristError, StorageFullError, StoreUnavailableError
from diarist.jobs.payloads import webhook_body
from diarist.jobs.tables import (
    CANCELED,
    CREATED,
    FAILED,
    PENDING,
    RUNNING,
    SUCCEEDED,
    TERMINAL,
    ApiKey,
    Job,
    JobPeaks,
    Media,
    ServerSecret,
    WebhookDelivery,
    Worker,
    utcnow,
)
from diarist.private_files import private_dir, private_file

# SQLite primary result codes (https://sqlite.org/rescode.html) that mean "not now" rather than a bug.
SQLITE_FULL = 13
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
GIB = 1024**3


class QuotaExceededError(DiaristError):
    """The key's audio quota cannot hold this job's audio."""


class StorageQuotaError(DiaristError):
    """The key's uploads would take more room than its storage quota."""


def storage_quota_message(total: int, quota: int) -> str:
    """Why an upload does not fit in the key's storage quota."""
    return (
        f"This upload would bring this key's stored media to {total} bytes, over its storage quota of "
        f"{quota} bytes ({quota / GIB:.3g} GiB). Uploads are deleted a while after they were written; "
        "uploading again under an existing media:// name replaces that file."
    )


@dataclass(frozen=True)
class NewKey:
    """A key as `keys create` shows it: the only time the secret parts are visible."""

    record: ApiKey
    key: str
    webhook_secret: str


def hash_key(key: str) -> str:
    # Keys are 256 random bits, so a plain digest is enough; no slow KDF is needed.
    return hashlib.sha256(key.encode()).hexdigest()


def quota_message(key: ApiKey, seconds: float) -> str:
    """Why a job's audio does not fit in the key's quota, in the user's terms."""
    held = f"{key.used_seconds:.1f} s used and {key.reserved_seconds:.1f} s held by unfinished jobs"
    quota = f"This key's quota of {key.quota_seconds / 3600:g} hours of audio"
    if seconds:
        return f"{quota} cannot take this audio's {seconds:.1f} s: {held}."
    return f"{quota} is used up: {held}."


@contextmanager
def database_errors() -> Iterator[None]:
    """Turn a busy, unreachable or full database into the service's typed errors."""
    try:
        yield
    except PoolTimeoutError as e:  # every pooled connection is busy for longer than the pool timeout
        raise StoreUnavailableError("The job database is busy or unreachable; try again shortly.") from e
    except (OperationalError, InterfaceError) as e:
        if _is_full(e.orig):
            raise StorageFullError("The server's disk is full.") from e
        if _is_temporary(e.orig):
            raise StoreUnavailableError("The job database is busy or unreachable; try again shortly.") from e
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


def _sqlite_pragmas(engine: Engine, busy_timeout: float) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself, below
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        # Write transactions take the lock up front, so they wait for it instead of failing later.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN")


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


def make_engine(url: str, busy_timeout: float = 30.0, pool_size: int = 5) -> Engine:
    """An engine for `url`; a write waits `busy_timeout` seconds for a lock, then fails.

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
        _sqlite_pragmas(engine, busy_timeout)
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
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    """The Alembic revision this code's schema is at."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head() or ""


def known_revision(revision: str) -> bool:
    """Whether `revision` is one of this code's migrations (else a later release wrote it)."""
    return any(script.revision == revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions())


class Store:
    """All reads and writes of service state. Records come back detached, safe to keep."""

    def __init__(self, url: str, busy_timeout: float = 30.0, pool_size: int = 5):
        self.engine = make_engine(url, busy_timeout, pool_size)
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(self.engine.execution_options(write=True), expire_on_commit=False)
        self.sqlite = self.engine.dialect.name == "sqlite"
        self._write_lock = threading.Lock() if self.sqlite else contextlib.nullcontext()

    @contextmanager
    def reading(self) -> Iterator[Session]:
        with database_errors(), self._read() as session:
            yield session

    @contextmanager
    def writing(self) -> Iterator[Session]:
        # SQLite lets one writer in at a time and makes the others poll with growing sleeps; queueing
        # this process's writers on a lock first keeps their wait as short as the write itself.
        with database_errors(), self._write_lock, self._write.begin() as session:
            yield session

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
        self.engine.dispose()

    # --- keys ---------------------------------------------------------------------------------

    def create_key(
        self,
        name: str,
        rate_limit_per_minute: int | None = None,
        quota_hours: float | None = None,
        storage_quota_bytes: int | None = None,
    ) -> NewKey:
        key_id = secrets.token_hex(6)
        key = f"dia_{key_id}_{secrets.token_urlsafe(32)}"
        secret = f"whs_{secrets.token_urlsafe(32)}"
        record = ApiKey(
            id=key_id,
            name=name,
            key_hash=hash_key(key),
            webhook_secret=secret,
            rate_limit_per_minute=rate_limit_per_minute,
            quota_seconds=None if quota_hours is None else quota_hours * 3600.0,
            used_seconds=0.0,
            reserved_seconds=0.0,
            storage_quota_bytes=storage_quota_bytes,
            created_at=utcnow(),
        )
        with self.writing() as session:
            session.add(record)
        return NewKey(record, key, secret)

    def authenticate(self, key: str) -> ApiKey | None:
        """The live key record for a presented key, or None."""
        parts = key.split("_", 2)
        if len(parts) != 3 or parts[0] != "dia":
            return None
        with self.reading() as session:
            record = session.get(ApiKey, parts[1])
        if record is None or record.revoked_at is not None:
            return None
        return record if hmac.compare_digest(record.key_hash, hash_key(key)) else None

    def get_key(self, key_id: str) -> ApiKey | None:
        with self.reading() as session:
            return session.get(ApiKey, key_id)

    def list_keys(self) -> list[ApiKey]:
        with self.reading() as session:
            return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at)))

    def revoke_key(self, key_id: str) -> bool:
        with self.writing() as session:
            done = session.execute(
                update(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None)).values(revoked_at=utcnow())
            )
        return done.rowcount == 1

    # --- jobs -----------------------------------------------------------------------------------

    def create_job(
        self,
        job_id: str,
        key_id: str,
        kind: str,
        request: dict,
        status: str = CREATED,
        reserve_seconds: float = 0.0,
    ) -> Job:
        """Record a job; `status=PENDING` also queues it for the workers that claim from this store.

        `reserve_seconds` of audio are held on the key's quota until the job ends, in the same
        transaction: QuotaExceededError when they do not fit (nor when the quota is used up).
        """
        now = utcnow()
        job = Job(
            id=job_id,
            key_id=key_id,
            kind=kind,
            status=status,
            request=request,
            attempts=0,
            reserved_seconds=reserve_seconds,
            created_at=now,
            updated_at=now,
        )
        with self.writing() as session:
            self._reserve(session, key_id, reserve_seconds)
            session.add(job)
        return job

    @staticmethod
    def _reserve(session: Session, key_id: str, seconds: float) -> None:
        # One conditional UPDATE: concurrent reservations are serialized by the database itself.
        held = ApiKey.used_seconds + ApiKey.reserved_seconds
        fits = or_(
            ApiKey.quota_seconds.is_(None), (held + seconds <= ApiKey.quota_seconds) & (held < ApiKey.quota_seconds)
        )
        done = session.execute(
            update(ApiKey).where(ApiKey.id == key_id, fits).values(reserved_seconds=ApiKey.reserved_seconds + seconds)
        )
        if done.rowcount != 1:
            key = session.get(ApiKey, key_id)
            raise QuotaExceededError(quota_message(key, seconds) if key else f"Unknown API key {key_id}.")

    @staticmethod
    def _settle(session: Session, job: Job, used_seconds: float = 0.0) -> None:
        """A job ended: give back what it held on the quota, and count what it used."""
        if job.reserved_seconds or used_seconds:
            session.execute(
                update(ApiKey)
                .where(ApiKey.id == job.key_id)
                .values(
                    reserved_seconds=ApiKey.reserved_seconds - job.reserved_seconds,
                    used_seconds=ApiKey.used_seconds + used_seconds,
                )
            )

    def reserve_audio(self, job_id: str, token: int, seconds: float) -> None:
        """Hold a running job's audio on its key's quota once its duration is known (URL inputs).

        Nothing happens when the job already holds its audio (measured at submit) or is no longer
        this run's (`token`, its attempt number). QuotaExceededError when the audio does not fit.
        """
        with self.writing() as session:
            job = session.scalars(
                update(Job)
                .where(Job.id == job_id, Job.status == RUNNING, Job.attempts == token, Job.reserved_seconds == 0)
                .values(reserved_seconds=seconds)
                .returning(Job),
                execution_options={"synchronize_session": False},
            ).one_or_none()
            if job is not None:
                self._reserve(session, job.key_id, seconds)

    def get_job(self, job_id: str, key_id: str | None = None) -> Job | None:
        with self.reading() as session:
            job = session.get(Job, job_id)
        return job if job is not None and (key_id is None or job.key_id == key_id) else None

    def list_jobs(
        self, key_id: str, status: str | None, limit: int, skip: int = 0, after: Job | None = None
    ) -> list[Job]:
        """Newest first; `after` continues a previous page from its last job."""
        query = select(Job).where(Job.key_id == key_id)
        if status:
            query = query.where(Job.status == status)
        if after is not None:
            query = query.where(
                or_(Job.created_at < after.created_at, (Job.created_at == after.created_at) & (Job.id < after.id))
            )
        query = query.order_by(Job.created_at.desc(), Job.id.desc()).offset(skip).limit(limit)
        with self.reading() as session:
            return list(session.scalars(query))

    def count_jobs(self, key_id: str, status: str | None) -> int:
        query = select(func.count()).select_from(Job).where(Job.key_id == key_id)
        if status:
            query = query.where(Job.status == status)
        with self.reading() as session:
            return session.scalar(query) or 0

    def claim_job(self, worker: str, job_id: str | None = None) -> Job | None:
        """Atomically take a pending job for `worker`: the oldest, or `job_id` only; None if there is none.

        The job comes back with its lease started and `attempts` incremented: that number is the
        run's fencing token. Only a `pending` job is claimed, never a running one whose lease
        expired: `reap_expired` makes those pending again first, which settles their attempt count.
        """
        if job_id is None:
            chosen = (
                select(Job.id)
                .where(Job.status == PENDING)
                .order_by(Job.created_at)
                .limit(1)
                .with_for_update(skip_locked=True)
                .scalar_subquery()
            )
        else:
            chosen = job_id
        now = utcnow()
        with self.writing() as session:
            return session.scalars(
                update(Job)
                .where(Job.id == chosen, Job.status == PENDING)
                .values(
                    status=RUNNING,
                    worker=worker,
                    attempts=Job.attempts + 1,
                    progress=0,
                    updated_at=now,
                    started_at=now,
                    heartbeat_at=now,
                )
                .returning(Job),
                execution_options={"synchronize_session": False},
            ).one_or_none()

    @staticmethod
    def _owned(job_id: str, token: int) -> tuple:
        """The condition every write of a run carries: the job is still running this attempt."""
        return (Job.id == job_id, Job.status == RUNNING, Job.attempts == token)

    def heartbeat(self, job_id: str, token: int) -> bool:
        """Refresh a running job's lease; False when the job is no longer this run's (canceled, re-queued)."""
        with self.writing() as session:
            done = session.execute(update(Job).where(*self._owned(job_id, token)).values(heartbeat_at=utcnow()))
        return done.rowcount == 1

    def report_progress(self, job_id: str, token: int, progress: int) -> bool:
        """Record progress (and refresh the lease); False when the job is no longer this run's."""
        now = utcnow()
        with self.writing() as session:
            done = session.execute(
                update(Job)
                .where(*self._owned(job_id, token))
                .values(progress=progress, heartbeat_at=now, updated_at=now)
            )
        return done.rowcount == 1

    def finish_job(
        self,
        job_id: str,
        token: int,
        status: str,
        output: dict,
        audio_seconds: float | None = None,
        peaks: Peaks | None = None,
    ) -> Job | None:
        """running -> succeeded/failed, with usage, webhook and waveform `peaks` recorded in the same transaction.

        None when the job is no longer this run's (`token`): the write is refused, nothing changes.
        """
        now = utcnow()
        with self.writing() as session:
            job = session.scalars(
                update(Job)
                .where(*self._owned(job_id, token))
                .values(status=status, output=output, progress=None, audio_seconds=audio_seconds)
                .values(updated_at=now, finished_at=now)
                .returning(Job),
                execution_options={"synchronize_session": False},
            ).one_or_none()
            if job is None:
                return None
            self._settle(session, job, (audio_seconds or 0.0) if status == SUCCEEDED else 0.0)
            self._add_webhook(session, job)
            if peaks is not None and status == SUCCEEDED:
                # merge: an earlier attempt that died after this write cannot have left one, but be safe.
                session.merge(JobPeaks(job_id=job_id, duration=peaks.duration, rate=peaks.rate, peaks=peaks.values))
        return job

    def get_peaks(self, job_id: str) -> Peaks | None:
        """A job's waveform overview; None when it has none (not succeeded, or its output expired)."""
        with self.reading() as session:
            row = session.get(JobPeaks, job_id)
        return None if row is None else Peaks(row.duration, row.rate, bytes(row.peaks))

    def set_speaker_names(self, job_id: str, key_id: str, names: dict[str, str | None]) -> dict[str, str] | None:
        """Merge `names` into the job's speaker names (None or "" removes one); the names now.

        None when the job has no output any more (expired meanwhile): the names are not kept.
        The read and the write are one transaction, so two renames at once both count.
        """
        with self.writing() as session:
            job = session.get(Job, job_id)
            if job is None or job.key_id != key_id or job.output is None:
                return None
            merged = dict(job.speaker_names or {})
            for speaker, name in names.items():
                if name:
                    merged[speaker] = name
                else:
                    merged.pop(speaker, None)
            session.execute(update(Job).where(Job.id == job_id).values(speaker_names=merged or None))
        return merged

    def cancel_job(self, job_id: str, key_id: str) -> Job | None:
        """Cancel a job that has not ended; a running worker notices at its next progress report."""
        now = utcnow()
        output = {"error": "The job was canceled."}
        with self.writing() as session:
            job = session.scalars(
                update(Job)
                .where(Job.id == job_id, Job.key_id == key_id, Job.status.not_in(TERMINAL))
                .values(status=CANCELED, output=output, progress=None, updated_at=now, finished_at=now)
                .returning(Job),
                execution_options={"synchronize_session": False},
            ).one_or_none()
            if job is not None:
                self._settle(session, job)
                self._add_webhook(session, job)
        return job

    def requeue_jobs(self, worker: str | None, max_attempts: int) -> int:
        """Give the running jobs of a dead worker (all workers when None) back to the queue.

        A job that already used `max_attempts` fails instead, so one input that kills its worker
        cannot take the service down in a loop.
        """
        now = utcnow()
        running = [Job.status == RUNNING] if worker is None else [Job.status == RUNNING, Job.worker == worker]
        with self.writing() as session:
            message = f"The worker running this job stopped {max_attempts} times."
            requeued = self._requeue_or_fail(session, running, max_attempts, message, now)
            # Jobs recorded but never queued (the server died between the two steps).
            session.execute(update(Job).where(Job.status == CREATED).values(status=PENDING, updated_at=now))
        return len(requeued)

    def reap_expired(self, lease_seconds: float, max_attempts: int) -> list[str]:
        """Re-queue the running jobs whose lease expired (their worker died, hangs or lost the
        database); a job that already used `max_attempts` fails instead. Returns the re-queued ids.

        Safe to run in any number of processes at once: each job changes state in one conditional
        UPDATE, so only one of them re-queues it, or fails it and adds its webhook.
        """
        now = utcnow()
        expired = [Job.status == RUNNING, Job.heartbeat_at < now - timedelta(seconds=lease_seconds)]
        message = (
            f"The job was stopped {max_attempts} times: its worker stopped answering for "
            f"{lease_seconds:g} s (crashed, hung or cut off) on each attempt."
        )
        with self.writing() as session:
            return self._requeue_or_fail(session, expired, max_attempts, message, now)

    def _requeue_or_fail(
        self, session: Session, running: list, max_attempts: int, message: str, now: datetime
    ) -> list[str]:
        """Send the running jobs matching `running` back to the queue, or fail with `message` those
        that used `max_attempts` (settling their quota and adding their webhook). The re-queued ids."""
        requeued = session.scalars(
            update(Job)
            .where(*running, Job.attempts < max_attempts)
            .values(status=PENDING, worker=None, progress=None, updated_at=now, published_at=None)
            .returning(Job.id),
            execution_options={"synchronize_session": False},
        ).all()
        gave_up = session.scalars(
            update(Job)
            .where(*running, Job.attempts >= max_attempts)
            .values(status=FAILED, progress=None, updated_at=now, finished_at=now, output={"error": message})
            .returning(Job),
            execution_options={"synchronize_session": False},
        ).all()
        for job in gave_up:
            self._settle(session, job)
            self._add_webhook(session, job)
        return list(requeued)

    def claim_publishing(
        self, stale_before: datetime, unpublished_before: datetime, job_ids: Sequence[str] = (), limit: int = 500
    ) -> list[Job]:
        """Pending jobs to (re)send to the broker, marked as published now so no other process sends them.

        Those published before `stale_before` (their message may be lost), those never published
        and last changed before `unpublished_before` (their publish failed, or a reaper re-queued
        them), and the unpublished ones among `job_ids` (just re-queued by this process).
        """
        now = utcnow()
        due = (
            select(Job.id)
            .where(
                Job.status == PENDING,
                or_(
                    Job.published_at < stale_before,
                    Job.published_at.is_(None) & (Job.updated_at < unpublished_before),
                    Job.published_at.is_(None) & Job.id.in_(list(job_ids)),
                ),
            )
            .order_by(Job.created_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        with self.writing() as session:
            return list(
                session.scalars(
                    update(Job).where(Job.id.in_(due), Job.status == PENDING).values(published_at=now).returning(Job),
                    execution_options={"synchronize_session": False},
                )
            )

    def mark_published(self, job_id: str) -> None:
        """Record that a pending job's message went to the broker."""
        with self.writing() as session:
            session.execute(update(Job).where(Job.id == job_id, Job.status == PENDING).values(published_at=utcnow()))

    # --- workers --------------------------------------------------------------------------------

    def worker_seen(self, name: str, kind: str, queues: str = "", concurrency: int = 1) -> None:
        """Register a worker process, or refresh its `seen_at` while it lives."""
        now = utcnow()
        with self.writing() as session:
            done = session.execute(update(Worker).where(Worker.name == name).values(seen_at=now))
            if done.rowcount == 0:
                session.add(
                    Worker(name=name, kind=kind, queues=queues, concurrency=concurrency, started_at=now, seen_at=now)
                )

    def remove_worker(self, name: str) -> None:
        """A worker stopped cleanly: it leaves the fleet at once instead of when its row goes stale."""
        with self.writing() as session:
            session.execute(delete(Worker).where(Worker.name == name))

    def forget_workers(self, seen_before: datetime) -> int:
        """Delete the rows of workers not seen since `seen_before`; how many."""
        with self.writing() as session:
            return session.execute(delete(Worker).where(Worker.seen_at < seen_before)).rowcount

    def live_workers(self, seen_within: float) -> list[Worker]:
        """The workers seen in the last `seen_within` seconds."""
        cutoff = utcnow() - timedelta(seconds=seen_within)
        with self.reading() as session:
            return list(session.scalars(select(Worker).where(Worker.seen_at >= cutoff).order_by(Worker.name)))

    def expire_outputs(self, finished_before: datetime) -> int:
        """Delete the outputs of jobs that ended before the given time, with their waveform overviews and
        speaker names; the jobs stay listed."""
        ended = select(Job.id).where(Job.finished_at < finished_before)
        with self.writing() as session:
            session.execute(delete(JobPeaks).where(JobPeaks.job_id.in_(ended)))
            return session.execute(
                update(Job)
                .where(Job.finished_at < finished_before, Job.output.is_not(None))
                .values(output=None, speaker_names=None)
            ).rowcount

    # --- media ----------------------------------------------------------------------------------

    def record_upload(
        self, key_id: str, object_key: str, size: int, quota_bytes: int = 0, origin: str | None = None
    ) -> None:
        """Record an upload (replacing one of the same name) held by the replica at `origin`; StorageQuotaError
        when the key's uploads would then take more than `quota_bytes` (0: no limit)."""
        with self.writing() as session:
            if quota_bytes:
                others = self._storage_used(session, key_id, object_key)
                if others + size > quota_bytes:
                    raise StorageQuotaError(storage_quota_message(others + size, quota_bytes))
            session.merge(Media(key_id=key_id, object_key=object_key, size=size, uploaded_at=utcnow(), origin=origin))

    def storage_used(self, key_id: str, excluding: str | None = None) -> int:
        """Bytes of the key's uploads, without the one named `excluding` (about to be replaced)."""
        with self.reading() as session:
            return self._storage_used(session, key_id, excluding)

    @staticmethod
    def _storage_used(session: Session, key_id: str, excluding: str | None) -> int:
        query = select(func.coalesce(func.sum(Media.size), 0)).where(Media.key_id == key_id)
        if excluding is not None:
            query = query.where(Media.object_key != excluding)
        return int(session.scalar(query) or 0)

    def get_media(self, key_id: str, object_key: str) -> Media | None:
        with self.reading() as session:
            return session.get(Media, (key_id, object_key))

    def expire_media(self, uploaded_before: datetime) -> list[Media]:
        with self.writing() as session:
            return list(
                session.scalars(
                    delete(Media).where(Media.uploaded_at < uploaded_before).returning(Media),
                    execution_options={"synchronize_session": False},
                )
            )

    # --- the URL signing secret ----------------------------------------------------------------

    def signing_secret(self, candidate: str) -> str:
        """The secret every replica signs URLs with: the stored one, else `candidate`, stored now.

        Replicas starting together may all try to store theirs: the primary key lets one insert
        win, and the others read the winner's.
        """
        with self.reading() as session:
            row = session.get(ServerSecret, 1)
        if row is None:
            with contextlib.suppress(IntegrityError), self.writing() as session:
                session.add(ServerSecret(id=1, value=candidate, created_at=utcnow()))
            with self.reading() as session:
                row = session.get(ServerSecret, 1)
        assert row is not None  # inserted by us or by the replica that won
        return row.value

    # --- webhooks -------------------------------------------------------------------------------

    @staticmethod
    def _add_webhook(session: Session, job: Job) -> None:
        url = job.request.get("webhook")
        if url:
            session.add(
                WebhookDelivery(
                    job_id=job.id,
                    key_id=job.key_id,
                    url=url,
                    body=webhook_body(job),
                    attempts=0,
                    due_at=utcnow(),
                    delivered=False,
                )
            )

    def claim_webhooks(self, limit: int, lease: timedelta) -> list[WebhookDelivery]:
        """Due deliveries, leased so that no other dispatcher sends them meanwhile."""
        now = utcnow()
        due = (
            select(WebhookDelivery.id)
            .where(
                WebhookDelivery.due_at <= now,
                or_(WebhookDelivery.claimed_until.is_(None), WebhookDelivery.claimed_until < now),
            )
            .order_by(WebhookDelivery.due_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        with self.writing() as session:
            return list(
                session.scalars(
                    update(WebhookDelivery)
                    .where(WebhookDelivery.id.in_(due))
                    .values(claimed_until=now + lease)
                    .returning(WebhookDelivery),
                    execution_options={"synchronize_session": False},
                )
            )

    def record_delivery(
        self, delivery_id: int, delivered: bool, status: int | None, reason: str | None, retry_at: datetime | None
    ) -> None:
        with self.writing() as session:
            session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id == delivery_id)
                .values(
                    attempts=WebhookDelivery.attempts + 1,
                    delivered=delivered,
                    last_status=status,
                    last_reason=reason,
                    due_at=None if delivered else retry_at,
                    claimed_until=None,
                )
            )

    def deliveries(self, job_id: str) -> list[WebhookDelivery]:
        with self.reading() as session:
            return list(session.scalars(select(WebhookDelivery).where(WebhookDelivery.job_id == job_id)))
