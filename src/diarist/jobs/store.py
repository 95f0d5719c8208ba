"""The job store: API keys, jobs, uploads and pending webhooks, in one SQL database.

The database is also the queue: workers claim `pending` jobs with one atomic UPDATE, so any
number of worker processes (here, or on other machines against PostgreSQL) never run a job
twice. Writes are single statements or short write-first transactions, which keeps SQLite's
one-writer lock short.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    create_engine,
    delete,
    event,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from diarist.errors import DiaristError, StorageFullError, StoreUnavailableError
from diarist.jobs.payloads import webhook_body
from diarist.jobs.private import private_dir, private_file
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
    Media,
    ServerSecret,
    WebhookDelivery,
    utcnow,
)

# SQLite primary result codes (https://sqlite.org/rescode.html) that mean "not now" rather than a bug.
SQLITE_FULL = 13
SQLITE_TEMPORARY = {5: "busy", 6: "locked", 10: "disk I/O error", 14: "cannot open", 15: "locking protocol"}
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
    except OperationalError as e:
        code = getattr(e.orig, "sqlite_errorcode", None)
        if code is not None and code & 0xFF == SQLITE_FULL:
            raise StorageFullError("The server's disk is full.") from e
        if code is None or code & 0xFF in SQLITE_TEMPORARY:
            raise StoreUnavailableError("The job database is busy or unreachable; try again shortly.") from e
        raise


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


def make_engine(url: str, busy_timeout: float = 30.0) -> Engine:
    """An engine for `url`; on SQLite a write waits `busy_timeout` seconds for the lock, then fails."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            # SQLite gives the -wal and -shm files the mode of the database file: 0600 covers all three.
            private_file(private_dir(Path(path).parent) / Path(path).name)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": busy_timeout})
        _sqlite_pragmas(engine, busy_timeout)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


class Store:
    """All reads and writes of service state. Records come back detached, safe to keep."""

    def __init__(self, url: str, busy_timeout: float = 30.0):
        self.engine = make_engine(url, busy_timeout)
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(self.engine.execution_options(write=True), expire_on_commit=False)
        self._write_lock = threading.Lock() if url.startswith("sqlite") else contextlib.nullcontext()

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

    def migrate(self) -> None:
        """Bring the schema to the latest Alembic revision (creates it on a new database)."""
        config = Config()
        config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        with self.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

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

    def reserve_audio(self, job_id: str, seconds: float) -> None:
        """Hold a running job's audio on its key's quota once its duration is known (URL inputs).

        Nothing happens when the job already holds its audio (measured at submit) or is no longer
        running. QuotaExceededError when the audio does not fit.
        """
        with self.writing() as session:
            job = session.scalars(
                update(Job)
                .where(Job.id == job_id, Job.status == RUNNING, Job.reserved_seconds == 0)
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

    def claim_job(self, worker: str) -> Job | None:
        """Atomically take the oldest pending job for `worker`, or None."""
        oldest = (
            select(Job.id)
            .where(Job.status == PENDING)
            .order_by(Job.created_at)
            .limit(1)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        now = utcnow()
        with self.writing() as session:
            return session.scalars(
                update(Job)
                .where(Job.id == oldest, Job.status == PENDING)
                .values(
                    status=RUNNING,
                    worker=worker,
                    attempts=Job.attempts + 1,
                    progress=0,
                    updated_at=now,
                    heartbeat_at=now,
                )
                .returning(Job),
                execution_options={"synchronize_session": False},
            ).one_or_none()

    def report_progress(self, job_id: str, worker: str, progress: int) -> bool:
        """Record progress; False when the job is no longer this worker's to run (canceled, requeued)."""
        now = utcnow()
        with self.writing() as session:
            done = session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == RUNNING, Job.worker == worker)
                .values(progress=progress, heartbeat_at=now, updated_at=now)
            )
        return done.rowcount == 1

    def finish_job(
        self, job_id: str, worker: str, status: str, output: dict, audio_seconds: float | None = None
    ) -> Job | None:
        """running -> succeeded/failed, with usage and webhook recorded in the same transaction."""
        now = utcnow()
        with self.writing() as session:
            job = session.scalars(
                update(Job)
                .where(Job.id == job_id, Job.status == RUNNING, Job.worker == worker)
                .values(status=status, output=output, progress=None, audio_seconds=audio_seconds)
                .values(updated_at=now, finished_at=now)
                .returning(Job),
                execution_options={"synchronize_session": False},
            ).one_or_none()
            if job is None:
                return None
            self._settle(session, job, (audio_seconds or 0.0) if status == SUCCEEDED else 0.0)
            self._add_webhook(session, job)
        return job

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
            requeued = session.execute(
                update(Job)
                .where(*running, Job.attempts < max_attempts)
                .values(status=PENDING, worker=None, progress=None, updated_at=now)
            ).rowcount
            gave_up = session.scalars(
                update(Job)
                .where(*running, Job.attempts >= max_attempts)
                .values(status=FAILED, progress=None, updated_at=now, finished_at=now)
                .values(output={"error": f"The worker running this job stopped {max_attempts} times."})
                .returning(Job),
                execution_options={"synchronize_session": False},
            ).all()
            for job in gave_up:
                self._settle(session, job)
                self._add_webhook(session, job)
            # Jobs recorded but never queued (the server died between the two steps).
            session.execute(update(Job).where(Job.status == CREATED).values(status=PENDING, updated_at=now))
        return requeued

    def expire_outputs(self, finished_before: datetime) -> int:
        """Delete the outputs of jobs that ended before the given time; the jobs stay listed."""
        with self.writing() as session:
            return session.execute(
                update(Job).where(Job.finished_at < finished_before, Job.output.is_not(None)).values(output=None)
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
