"""What `/metrics` reports about the jobs, read from the database at scrape time.

The job rows are the one source of truth shared by every API process and worker, so any of them
answers the same; nothing here is kept in a process's memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select

from diarist.jobs.store import Store
from diarist.jobs.tables import FAILED, PENDING, RUNNING, STATUSES, SUCCEEDED, Job, Worker, utcnow


@dataclass
class FinishedJob:
    """A job that ended within the window: how long its last attempt ran, and on how much audio."""

    status: str
    seconds: float
    audio_seconds: float | None


@dataclass
class JobStats:
    by_status: dict[str, int]
    oldest_pending_seconds: float  # 0 when nothing waits
    expired_leases: int  # running jobs whose worker has not been heard from for a lease
    workers: dict[str, int]  # worker processes heard from within a lease, by kind (local, celery)
    finished: list[FinishedJob] = field(default_factory=list)

    @property
    def queue_depth(self) -> int:
        return self.by_status[PENDING]


def job_stats(store: Store, window: timedelta, lease_seconds: float, now: datetime | None = None) -> JobStats:
    """Counts by status, the queue's oldest wait, expired leases, and the jobs that ended in `window`.

    Raises StoreUnavailableError when the database does not answer.
    """
    now = now or utcnow()
    with store.reading() as session:
        counts = dict(session.execute(select(Job.status, func.count()).group_by(Job.status)).all())
        oldest = session.scalar(select(func.min(Job.created_at)).where(Job.status == PENDING))
        expired = session.scalar(
            select(func.count())
            .select_from(Job)
            .where(Job.status == RUNNING, Job.heartbeat_at < now - timedelta(seconds=lease_seconds))
        )
        workers = dict(
            session.execute(
                select(Worker.kind, func.count())
                .where(Worker.seen_at >= now - timedelta(seconds=lease_seconds))
                .group_by(Worker.kind)
            ).all()
        )
        rows = session.execute(
            select(Job.status, Job.started_at, Job.finished_at, Job.audio_seconds).where(
                Job.finished_at >= now - window, Job.status.in_((SUCCEEDED, FAILED)), Job.started_at.is_not(None)
            )
        ).all()
    return JobStats(
        by_status={status: counts.get(status, 0) for status in STATUSES},
        oldest_pending_seconds=0.0 if oldest is None else max(0.0, (now - oldest).total_seconds()),
        expired_leases=expired or 0,
        workers={kind: workers.get(kind, 0) for kind in ("local", "celery")},
        finished=[
            FinishedJob(status, (finished - started).total_seconds(), audio)
            for status, started, finished, audio in rows
        ],
    )
