"""How the API hands a job to the workers; the only thing routes know about execution."""

from __future__ import annotations

import logging
import uuid

from diarist.jobs.executors import Executor
from diarist.jobs.spec import JobSpec
from diarist.jobs.store import Store
from diarist.jobs.tables import PENDING, Job

log = logging.getLogger("diarist.jobs")


class JobQueue:
    """Records jobs as `pending` in the store, where any worker can claim them, then tells the
    executor, which wakes local workers or sends the job to the Celery broker."""

    def __init__(self, store: Store, executor: Executor):
        self.store, self.executor = store, executor

    def submit(self, key_id: str, spec: JobSpec, reserve_seconds: float = 0.0, unlimited: bool = False) -> Job:
        """Queue the job `spec` asks for, holding `reserve_seconds` of audio on the key's quota (QuotaExceededError;
        `unlimited`: the key has none).

        The row is committed before the job is published: a worker never gets an id it cannot find,
        and a publish that fails loses nothing (the job stays pending and the reaper publishes it).
        """
        job_id = str(uuid.uuid4())
        job = self.store.create_job(job_id, key_id, spec.kind, spec.to_json(), PENDING, reserve_seconds, unlimited)
        try:
            self.executor.publish(job)
        except Exception as e:  # the broker is down or unreachable: not the client's problem
            log.warning("job %s not published yet (%s: %s); the reaper will publish it", job.id, type(e).__name__, e)
        return job
