"""How the API hands a job to the workers; the only thing routes know about execution."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from diarist.jobs.store import Store
from diarist.jobs.tables import PENDING, Job


class JobQueue:
    """Records jobs as `pending` in the store, where any worker can claim them, and wakes local workers."""

    def __init__(self, store: Store, wake: Callable[[], None] | None = None):
        self.store, self.wake = store, wake

    def submit(self, key_id: str, kind: str, request: dict, reserve_seconds: float = 0.0) -> Job:
        """Queue a job, holding `reserve_seconds` of audio on the key's quota (QuotaExceededError)."""
        job = self.store.create_job(str(uuid.uuid4()), key_id, kind, request, PENDING, reserve_seconds)
        if self.wake is not None:
            self.wake()
        return job
