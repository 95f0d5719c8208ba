"""The service's tables and job statuses: what the job store keeps, in SQLAlchemy's terms.

The queries live in the `store` package; Alembic's migrations describe the same schema step by step.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    literal,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

CREATED, PENDING, RUNNING = "created", "pending", "running"
SUCCEEDED, FAILED, CANCELED = "succeeded", "failed", "canceled"
TERMINAL = (SUCCEEDED, FAILED, CANCELED)
STATUSES = (PENDING, CREATED, SUCCEEDED, CANCELED, FAILED, RUNNING)


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes on every backend (SQLite stores no time zone)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class db_now(FunctionElement):
    """The database's UTC time, `seconds` later, in SQL: what leases are written and compared with.

    Every host of a fleet reads this one clock, so a worker whose own clock is off cannot see
    healthy leases as expired, nor make its own look older than they are.
    """

    type = UTCDateTime()
    name = "db_now"
    inherit_cache = True

    def __init__(self, seconds: float = 0.0):
        super().__init__(literal(float(seconds), Float()))


@compiles(db_now, "sqlite")
def _sqlite_now(element: db_now, compiler: SQLCompiler, **kw: Any) -> str:
    # The text SQLAlchemy stores SQLite datetimes as (microseconds), so that comparisons of strings hold.
    seconds = compiler.process(element.clauses, **kw)
    return f"strftime('%Y-%m-%d %H:%M:%f000', 'now', {seconds} || ' seconds')"


@compiles(db_now, "postgresql")
def _postgres_now(element: db_now, compiler: SQLCompiler, **kw: Any) -> str:
    # The columns are `timestamp without time zone` holding UTC.
    seconds = compiler.process(element.clauses, **kw)
    return f"(timezone('UTC', now()) + make_interval(secs => {seconds}))"


class Base(DeclarativeBase):
    pass


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # the public part of the key
    name: Mapped[str] = mapped_column(String(200))
    key_hash: Mapped[str] = mapped_column(String(64))  # sha256 hex of the whole key
    webhook_secret: Mapped[str] = mapped_column(String(100))  # must be readable: it signs webhooks
    rate_limit_per_minute: Mapped[int | None] = mapped_column(Integer)  # None: the server default
    quota_seconds: Mapped[float | None] = mapped_column(Float)  # None: unlimited
    used_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    # Audio of the jobs that have not ended yet, held against the quota so that it cannot be overrun.
    reserved_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    storage_quota_bytes: Mapped[int | None] = mapped_column(BigInteger)  # None: the server default
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_key_created", "key_id", "created_at"),
        Index("ix_jobs_status_created", "status", "created_at"),
        Index("ix_jobs_status_heartbeat", "status", "heartbeat_at"),  # the reaper's scan for expired leases
        Index("ix_jobs_finished_at", "finished_at"),  # retention, and the metrics' window of ended jobs
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(20))  # "diarize"
    status: Mapped[str] = mapped_column(String(10))
    request: Mapped[dict] = mapped_column(JSON)  # the validated request body, camelCase as sent
    # The pyannoteAI output; {"error": ...} when failed; None once deleted by retention.
    output: Mapped[dict | None] = mapped_column(JSON(none_as_null=True))
    progress: Mapped[int | None] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(100))
    audio_seconds: Mapped[float | None] = mapped_column(Float)
    reserved_seconds: Mapped[float] = mapped_column(Float, default=0.0)  # held on the key until the job ends
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # the latest attempt's claim
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The lease: the worker running the job refreshes it; past lease_seconds the job is re-queued.
    # `attempts` is the fencing token: every write of a run is conditional on it.
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # last sent to the Celery broker
    # Attempts that ended in a passing fault (the replica holding the upload did not answer): the
    # job went back to the queue, claimable again from `retry_at`. They are not worker deaths.
    retries: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Names the user gave the output's speakers ({"SPEAKER_00": "Alice"}); None: none. Deleted with the output.
    speaker_names: Mapped[dict | None] = mapped_column(JSON(none_as_null=True))


class JobPeaks(Base):
    """A succeeded job's waveform overview (`audio.Peaks`), for the web page.

    A table of its own, so that job lists and job GETs never load it; deleted with the job's output.
    """

    __tablename__ = "job_peaks"

    job_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    duration: Mapped[float] = mapped_column(Float)
    rate: Mapped[float] = mapped_column(Float)
    peaks: Mapped[bytes] = mapped_column(LargeBinary)  # one byte per value, 0..127


class Worker(Base):
    """A worker process (local or Celery), refreshed while it lives; the fresh rows are the fleet."""

    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    kind: Mapped[str] = mapped_column(String(10))  # local | celery
    queues: Mapped[str] = mapped_column(String(200))  # comma-separated; "" for local workers
    concurrency: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class Media(Base):
    __tablename__ = "media"

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    object_key: Mapped[str] = mapped_column(String(255), primary_key=True)  # media://<object_key>
    size: Mapped[int] = mapped_column(BigInteger)
    uploaded_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    # The internal URL of the API replica whose disk holds the file; None: uploaded before replicas knew theirs.
    origin: Mapped[str | None] = mapped_column(String(300))


class ServerSecret(Base):
    """The one key that signs upload/download URLs, shared by every API replica and worker (one row, id 1)."""

    __tablename__ = "server_secret"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    value: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(36), index=True)
    key_id: Mapped[str] = mapped_column(String(32))
    url: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)  # frozen at enqueue time: retries send the same bytes
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)  # None: no more attempts
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivered: Mapped[bool] = mapped_column(default=False)
    last_reason: Mapped[str | None] = mapped_column(String(30))
    last_status: Mapped[int | None] = mapped_column(Integer)


# A live stream's statuses, as pyannoteAI names them: its URL handed out, its socket open, ended.
STREAM_CREATED, STREAM_RUNNING, STREAM_DONE, STREAM_ERROR = "created", "running", "done", "error"


class LiveStream(Base):
    """A live stream (POST /v1/live): its single-use token until its socket opens, then its progress."""

    __tablename__ = "live_streams"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(32), index=True)
    status: Mapped[str] = mapped_column(String(10))
    token_hash: Mapped[str | None] = mapped_column(String(64))  # sha256 hex; None once used
    token_expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # refreshed by the replica that runs it
    replica: Mapped[str | None] = mapped_column(String(200))  # the replica holding its socket
    seconds: Mapped[float] = mapped_column(Float, default=0.0)  # audio streamed, counted on the key's quota
    error: Mapped[str | None] = mapped_column(Text)
    options: Mapped[dict] = mapped_column(JSON)  # the POST /v1/live body: model, latency, keepAudio, webhook
    job_id: Mapped[str | None] = mapped_column(String(36))  # the offline diarization of its kept audio
