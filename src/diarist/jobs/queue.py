"""How the API hands a job to the workers; the only thing routes know about execution."""

from __future__ import annotations

from collections.abc import Callable

from diarist.jobs.store import Store


class JobQueue:
    """Marks a job `pending` in the store, where any worker can claim it, and wakes local workers."""

    def __init__(self, store: Store, wake: Callable[[], None] | None = None):
        self.store, self.wake = store, wake

    def submit(self, job_id: str) -> None:
        self.store.enqueue(job_id)
        if self.wake is not None:
            self.wake()
