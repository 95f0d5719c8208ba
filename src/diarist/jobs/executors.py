"""How the jobs an API server queues get run: the executor it starts and stops with itself.

`local` (the embedded default) runs worker processes beside the server; `celery` publishes each
job to a broker that `diarist worker` processes on other machines listen to. Either way the job
row in the store is the truth, and a reaper re-queues the jobs of workers that stopped answering.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from diarist.jobs.store import Store
from diarist.jobs.tables import Job
from diarist.settings import Settings


class Executor(Protocol):
    def start(self) -> None:
        """Start running queued jobs (and re-queue the abandoned ones)."""

    def stop(self) -> None:
        """Stop; a job still running here goes back to the queue."""

    def publish(self, job: Job) -> None:
        """Tell the workers about a job just queued; may raise when they cannot be told (it stays queued)."""

    def reports(self) -> dict[str, Callable[[], dict[str, Any]]]:
        """Health reports by name, for GET /health."""


def make_executor(settings: Settings, store: Store) -> Executor:
    """The executor `settings.executor` names."""
    if settings.executor == "celery":
        from diarist.jobs.celery_app import CeleryExecutor  # Celery is imported only where a fleet runs

        return CeleryExecutor(settings, store)
    from diarist.jobs.local import LocalExecutor

    return LocalExecutor(settings, store)
