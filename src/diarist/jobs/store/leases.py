"""A job's way through the queue: claimed under a lease, fenced writes while it runs, re-queued when its worker
is gone, and (with Celery) published to the broker.

The database is also the queue: workers claim `pending` jobs with one atomic UPDATE, so any number of worker
processes (here, or on other machines against PostgreSQL) never run a job twice.

Leases and fencing: a claim sets `heartbeat_at` and increments `attempts`, which is the run's
fencing token. The running worker refreshes `heartbeat_at` (`heartbeat`), and every write of the
run (progress, audio reservation, finish) is conditional on (status running, attempts == token):
once the job was canceled, or re-queued by `reap_expired` after its lease expired and claimed
again, the old run can write nothing. The database, not the broker, decides who runs a job.
Every time here is the database's clock (`db_now`), never the host's: a worker whose clock is
minutes off neither re-queues the healthy jobs of others nor writes leases that look expired.

Retries: a run that meets a passing fault (the API replica holding its upload is restarting)
sends its job back to the queue itself (`retry_job`), claimable again only after a pause.

A key may have at most `cap` jobs running at once (the claim's argument): the others stay
pending, and are claimed (or, with Celery, published again) once the key's running jobs end.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ColumnElement, ScalarSelect, and_, func, or_, select, update
from sqlalchemy.orm import Session, aliased

from diarist.audio import Peaks
from diarist.jobs.store.core import Core
from diarist.jobs.store.quota import reserve, settle
from diarist.jobs.store.webhooks import add_webhook
from diarist.jobs.tables import CREATED, FAILED, PENDING, RUNNING, SUCCEEDED, ApiKey, Job, JobPeaks, db_now


def _owned(job_id: str, token: int) -> tuple:
    """The condition every write of a run carries: the job is still running this attempt."""
    return (Job.id == job_id, Job.status == RUNNING, Job.attempts == token)


def _due() -> ColumnElement[bool]:
    """A pending job is not waiting out a retry's pause."""
    return or_(Job.retry_at.is_(None), Job.retry_at <= db_now())


def _running(key_id: ColumnElement[str]) -> ScalarSelect[int]:
    """How many jobs of the key `key_id` (a column of the enclosing query) are running."""
    other = aliased(Job)
    return select(func.count()).where(other.key_id == key_id, other.status == RUNNING).scalar_subquery()


class LeasesMixin(Core):
    """The store's side of running jobs: what workers, reapers and the broker's publisher write."""

    def claim_job(self, worker: str, job_id: str | None = None, cap: int | None = None) -> Job | None:
        """Atomically take a pending job for `worker`: the oldest, or `job_id` only; None if there is none.

        The job comes back with its lease started and `attempts` incremented: that number is the
        run's fencing token. Only a `pending` job is claimed, never a running one whose lease
        expired: `reap_expired` makes those pending again first, which settles their attempt count.
        Nor one waiting out a retry's pause, nor one whose key already runs `cap` jobs (None: no
        limit); `job_id` refused for its key's cap is marked unpublished, so the reaper sends it
        to the broker again once the key has room.
        """
        candidate = select(Job.id, Job.key_id).where(Job.status == PENDING, _due())
        if job_id is not None:
            candidate = candidate.where(Job.id == job_id).with_for_update()
        else:
            if cap is not None:
                candidate = candidate.where(_running(Job.key_id) < cap)
            candidate = candidate.order_by(Job.created_at).limit(1).with_for_update(skip_locked=True)
        with self.writing() as session:
            chosen = session.execute(candidate).first()
            if chosen is None:
                return None
            if cap is not None:
                # Claims of one key's jobs wait for each other here, so that two workers claiming
                # at once cannot both take the key's last place.
                session.execute(select(ApiKey.id).where(ApiKey.id == chosen.key_id).with_for_update())
                running = select(func.count()).where(Job.key_id == chosen.key_id, Job.status == RUNNING)
                if session.scalar(running) >= cap:
                    session.execute(update(Job).where(Job.id == chosen.id).values(published_at=None))
                    return None
            return session.scalars(
                update(Job)
                .where(Job.id == chosen.id, Job.status == PENDING)
                .values(
                    status=RUNNING,
                    worker=worker,
                    attempts=Job.attempts + 1,
                    progress=0,
                    updated_at=db_now(),
                    started_at=db_now(),
                    heartbeat_at=db_now(),
                )
                .returning(Job),
                execution_options={"synchronize_session": False},
            ).one_or_none()

    def heartbeat(self, job_id: str, token: int) -> bool:
        """Refresh a running job's lease; False when the job is no longer this run's (canceled, re-queued)."""
        with self.writing() as session:
            done = session.execute(update(Job).where(*_owned(job_id, token)).values(heartbeat_at=db_now()))
        return done.rowcount == 1

    def report_progress(self, job_id: str, token: int, progress: int) -> bool:
        """Record progress (and refresh the lease); False when the job is no longer this run's."""
        with self.writing() as session:
            done = session.execute(
                update(Job)
                .where(*_owned(job_id, token))
                .values(progress=progress, heartbeat_at=db_now(), updated_at=db_now())
            )
        return done.rowcount == 1

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
                reserve(session, job.key_id, seconds)

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
        with self.writing() as session:
            job = session.scalars(
                update(Job)
                .where(*_owned(job_id, token))
                .values(status=status, output=output, progress=None, audio_seconds=audio_seconds)
                .values(updated_at=db_now(), finished_at=db_now())
                .returning(Job),
                execution_options={"synchronize_session": False},
            ).one_or_none()
            if job is None:
                return None
            settle(session, job, (audio_seconds or 0.0) if status == SUCCEEDED else 0.0)
            add_webhook(session, job)
            if peaks is not None and status == SUCCEEDED:
                # merge: an earlier attempt that died after this write cannot have left one, but be safe.
                session.merge(JobPeaks(job_id=job_id, duration=peaks.duration, rate=peaks.rate, peaks=peaks.values))
        return job

    def requeue_jobs(self, worker: str | None, max_attempts: int) -> int:
        """Give the running jobs of a dead worker (all workers when None) back to the queue.

        A job that already used `max_attempts` fails instead, so one input that kills its worker
        cannot take the service down in a loop.
        """
        running = [Job.status == RUNNING] if worker is None else [Job.status == RUNNING, Job.worker == worker]
        with self.writing() as session:
            message = f"The worker running this job stopped {max_attempts} times."
            requeued = self._requeue_or_fail(session, running, max_attempts, message)
            # Jobs recorded but never queued (the server died between the two steps).
            session.execute(update(Job).where(Job.status == CREATED).values(status=PENDING, updated_at=db_now()))
        return len(requeued)

    def reap_expired(self, lease_seconds: float, max_attempts: int) -> list[str]:
        """Re-queue the running jobs whose lease expired (their worker died, hangs or lost the
        database); a job that already used `max_attempts` fails instead. Returns the re-queued ids.

        Safe to run in any number of processes at once: each job changes state in one conditional
        UPDATE, so only one of them re-queues it, or fails it and adds its webhook.
        """
        expired = [Job.status == RUNNING, Job.heartbeat_at < db_now(-lease_seconds)]
        message = (
            f"The job was stopped {max_attempts} times: its worker stopped answering for "
            f"{lease_seconds:g} s (crashed, hung or cut off) on each attempt."
        )
        with self.writing() as session:
            return self._requeue_or_fail(session, expired, max_attempts, message)

    def retry_job(self, job_id: str, token: int, delay_seconds: float, max_retries: int) -> bool:
        """Send a running job back to the queue after a passing fault, claimable in `delay_seconds`.

        False, and nothing changes, when the job already had `max_retries` retries or is no longer
        this run's (`token`): the caller then ends it as failed.
        """
        with self.writing() as session:
            done = session.execute(
                update(Job)
                .where(*_owned(job_id, token), Job.retries < max_retries)
                .values(status=PENDING, worker=None, progress=None, retries=Job.retries + 1, published_at=None)
                .values(retry_at=db_now(delay_seconds), updated_at=db_now())
            )
        return done.rowcount == 1

    def _requeue_or_fail(self, session: Session, running: list, max_attempts: int, message: str) -> list[str]:
        """Send the running jobs matching `running` back to the queue, or fail with `message` those
        that used `max_attempts` (settling their quota and adding their webhook). The re-queued ids.

        Attempts that ended in a retry (`retry_job`) are not the worker's failures, and do not count.
        """
        stopped = Job.attempts - Job.retries
        requeued = session.scalars(
            update(Job)
            .where(*running, stopped < max_attempts)
            .values(status=PENDING, worker=None, progress=None, updated_at=db_now(), published_at=None)
            .returning(Job.id),
            execution_options={"synchronize_session": False},
        ).all()
        gave_up = session.scalars(
            update(Job)
            .where(*running, stopped >= max_attempts)
            .values(status=FAILED, progress=None, updated_at=db_now(), finished_at=db_now(), output={"error": message})
            .returning(Job),
            execution_options={"synchronize_session": False},
        ).all()
        for job in gave_up:
            settle(session, job)
            add_webhook(session, job)
        return list(requeued)

    def claim_publishing(
        self,
        stale_seconds: float,
        unpublished_seconds: float,
        job_ids: Sequence[str] = (),
        cap: int | None = None,
        limit: int = 500,
    ) -> list[Job]:
        """Pending jobs to (re)send to the broker, marked as published now so no other process sends them.

        Those published over `stale_seconds` ago (their message may be lost), those never published
        and last changed over `unpublished_seconds` ago (their publish failed, a reaper re-queued
        them, or a worker refused them for their key's cap), and the unpublished ones among
        `job_ids` (just re-queued by this process). None waiting out a retry's pause, and no more
        of one key's jobs than its running jobs leave room for under `cap` (None: no limit).
        """
        due = and_(
            Job.status == PENDING,
            _due(),
            or_(
                Job.published_at < db_now(-stale_seconds),
                Job.published_at.is_(None) & (Job.updated_at < db_now(-unpublished_seconds)),
                Job.published_at.is_(None) & Job.id.in_(list(job_ids)),
            ),
        )
        if cap is None:
            chosen = select(Job.id).where(due)
        else:
            place = func.row_number().over(partition_by=Job.key_id, order_by=Job.created_at) + _running(Job.key_id)
            ranked = select(Job.id, place.label("place")).where(due).subquery()
            chosen = select(Job.id).where(Job.id.in_(select(ranked.c.id).where(ranked.c.place <= cap)))
        chosen = chosen.order_by(Job.created_at).limit(limit).with_for_update(skip_locked=True)
        with self.writing() as session:
            return list(
                session.scalars(
                    update(Job)
                    .where(Job.id.in_(chosen), Job.status == PENDING)
                    .values(published_at=db_now())
                    .returning(Job),
                    execution_options={"synchronize_session": False},
                )
            )

    def mark_published(self, job_id: str) -> None:
        """Record that a pending job's message went to the broker."""
        with self.writing() as session:
            session.execute(update(Job).where(Job.id == job_id, Job.status == PENDING).values(published_at=db_now()))
