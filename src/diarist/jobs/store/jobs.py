"""Jobs as their owners see them: submitted, read, listed, counted, renamed, canceled, their outputs expired."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, insert, or_, select, update

from diarist.audio import Peaks
from diarist.jobs.store.core import Core
from diarist.jobs.store.quota import reserve, settle
from diarist.jobs.store.webhooks import add_webhook
from diarist.jobs.tables import CANCELED, CREATED, TERMINAL, Job, JobPeaks, utcnow


class JobsMixin(Core):
    """The store's jobs, outside of a worker's run of them."""

    def create_job(
        self,
        job_id: str,
        key_id: str,
        kind: str,
        request: dict,
        status: str = CREATED,
        reserve_seconds: float = 0.0,
        unlimited: bool = False,
    ) -> Job:
        """Record a job; `status=PENDING` also queues it for the workers that claim from this store.

        `reserve_seconds` of audio are held on the key's quota until the job ends, in the same
        transaction: QuotaExceededError when they do not fit (nor when the quota is used up).
        `unlimited`: the key has no quota (a key never gains one), so holding 0 s checks nothing.
        """
        now = utcnow()
        row = {
            "id": job_id,
            "key_id": key_id,
            "kind": kind,
            "status": status,
            "request": request,
            "attempts": 0,
            "retries": 0,
            "reserved_seconds": reserve_seconds,
            "created_at": now,
            "updated_at": now,
        }
        with self.writing() as session:
            # A no-op UPDATE would still lengthen the transaction that holds SQLite's one write lock.
            if reserve_seconds or not unlimited:
                reserve(session, key_id, reserve_seconds)
            # A plain INSERT, not the ORM's unit of work: about half the Python inside the write lock.
            session.connection().execute(insert(Job.__table__), row)
        return Job(**row)

    def get_job(self, job_id: str, key_id: str | None = None) -> Job | None:
        job = self.rows(Job).get(job_id)
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
                settle(session, job)
                add_webhook(session, job)
        return job

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
