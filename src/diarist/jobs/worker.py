"""Worker processes: each one claims pending jobs from the store and runs them, one at a time.

`LocalWorkers` keeps N of them alive next to the API server. The queue is the store itself,
so a worker started anywhere else against the same database takes part in the same way.
Every worker process registers in the `workers` table and refreshes its row while it lives;
`reaper` is the loop every API and `diarist worker` process runs to re-queue jobs whose lease
expired, whichever executor ran them.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from multiprocessing.synchronize import Event
from typing import Any, Protocol, TypeVar

from diarist.errors import StorageFullError, StoreUnavailableError
from diarist.jobs.background import Periodic, backoff
from diarist.jobs.media import MediaStore, signing_secret
from diarist.jobs.runner import RunnerConfig, run_job
from diarist.jobs.store import Store
from diarist.jobs.tables import Job
from diarist.net import NetPolicy
from diarist.settings import Settings

log = logging.getLogger("diarist.jobs")
IDLE_POLL_SECONDS = 0.5  # how often an idle worker looks for work when nobody wakes it
WORKER_POOL_SIZE = 2  # PostgreSQL connections of a worker: its job's writes, and one beside them at peaks
TRANSIENT = (StoreUnavailableError, StorageFullError)  # the database may answer again later
T = TypeVar("T")


class Waitable(Protocol):
    """A stop signal: multiprocessing's Event for local workers, threading's for Celery's."""

    def wait(self, timeout: float | None = None) -> bool: ...

    def is_set(self) -> bool: ...


def runner_config(settings: Settings, secret: bytes) -> RunnerConfig:
    """What `run_job` needs, from the settings and the URL signing secret (`media.signing_secret`)."""
    return RunnerConfig(
        media=MediaStore(settings.media_dir),
        downloads=settings.downloads_dir,
        policy=net_policy(settings),
        max_input_bytes=settings.max_input_bytes,
        max_duration_seconds=settings.max_duration_hours * 3600,
        asr_models=settings.asr_models_dir,
        secret=secret,
        origin_retries=settings.origin_retries,
    )


def net_policy(settings: Settings) -> NetPolicy:
    return NetPolicy(
        allowed_hosts=tuple(settings.allowed_hosts),
        connect_timeout=settings.fetch_connect_timeout,
        read_timeout=settings.fetch_read_timeout,
        max_redirects=settings.fetch_max_redirects,
        total_timeout=settings.fetch_total_timeout,
        min_rate=settings.fetch_min_rate,
        rate_window=settings.fetch_rate_window,
    )


def running_cap(settings: Settings) -> int | None:
    """How many jobs of one key may run at once (`max_running_jobs_per_key`); None: no limit."""
    return settings.max_running_jobs_per_key or None


class WorkerStore(Store):
    """The store as a worker uses it: a busy or full database delays a job, it never loses it.

    A job's end is written again and again (with growing pauses) until the database takes it;
    a progress write that fails is skipped, as the next one will do.
    """

    def __init__(self, url: str, busy_timeout: float, stop: Waitable):
        super().__init__(url, busy_timeout, WORKER_POOL_SIZE)
        self.stop = stop

    def patiently(self, what: str, write: Callable[[], T]) -> T | None:
        """`write()`, tried again after each transient database error; None if the worker is stopped first."""
        failures = 0
        while True:
            try:
                return write()
            except TRANSIENT as e:
                failures += 1
                delay = backoff(failures)
                log.warning("%s failed (%s); trying again in %g s", what, e, delay)
                if self.stop.wait(delay):
                    # The job stays `running` under this worker's name; the server re-queues it.
                    return None

    def finish_job(self, job_id: str, token: int, status: str, output: dict, **usage: Any) -> Job | None:
        return self.patiently(
            f"recording the end of job {job_id}",
            lambda: super(WorkerStore, self).finish_job(job_id, token, status, output, **usage),
        )

    def reserve_audio(self, job_id: str, token: int, seconds: float) -> None:
        self.patiently(
            f"reserving the audio of job {job_id}",
            lambda: super(WorkerStore, self).reserve_audio(job_id, token, seconds),
        )

    def retry_job(self, job_id: str, token: int, delay_seconds: float, max_retries: int) -> bool:
        retried = self.patiently(
            f"queueing job {job_id} again",
            lambda: super(WorkerStore, self).retry_job(job_id, token, delay_seconds, max_retries),
        )
        return bool(retried)

    def report_progress(self, job_id: str, token: int, progress: int) -> bool:
        try:
            return super().report_progress(job_id, token, progress)
        except TRANSIENT as e:
            log.warning("progress of job %s not recorded: %s", job_id, e)
            return True  # keep running: the job is still ours as far as we know


def work(settings: Settings, name: str, wake: Event, stop: Event) -> None:
    """Claim and run jobs until `stop` is set or the parent process goes away, all on one engine."""
    from diarist.engine import Engine

    threads = settings.worker_threads()
    engine = Engine(settings.device, threads)
    store = WorkerStore(settings.database, settings.database_busy_timeout_seconds, stop)
    secret = store.patiently("reading the signing secret", lambda: signing_secret(store, settings.data_dir))
    if secret is None:  # stopped while the database was away
        store.close()
        return
    config = runner_config(settings, secret)
    parent = os.getppid()
    presence = registration(store, settings, name, "local")
    presence.start()
    log.info("worker %s ready (%d threads on %s)", name, threads, engine.device)
    while not stop.is_set() and os.getppid() == parent:
        job = store.patiently("claiming a job", lambda: store.claim_job(name, cap=running_cap(settings)))
        if job is not None:
            log.info("worker %s runs job %s (attempt %d)", name, job.id, job.attempts)
            run_job(job, store, config, settings.heartbeat_seconds, engine)
        elif wake.wait(IDLE_POLL_SECONDS):
            wake.clear()
    presence.stop()
    with contextlib.suppress(*TRANSIENT):  # a stale row leaves the count by itself
        store.remove_worker(name)
    store.close()


def registration(store: Store, settings: Settings, name: str, kind: str, queues: str = "", concurrency: int = 1):
    """A loop that keeps this worker's row in the `workers` table fresh (the fleet's worker count)."""
    return Periodic(
        "worker-registration",
        settings.heartbeat_seconds,
        lambda: store.worker_seen(name, kind, queues, concurrency),
    )


def reaper(store: Store, settings: Settings, publish: Callable[[Job], None] | None = None) -> Periodic:
    """The loop that re-queues jobs whose lease expired; with `publish` (Celery), it also sends
    re-queued jobs to the broker, and again those whose message may be lost or never went out
    (among them those back from a retry's pause, or refused while their key was at its cap)."""

    def tick() -> None:
        requeued = store.reap_expired(settings.lease_seconds, settings.max_attempts)
        if requeued:
            log.warning("re-queued %d jobs whose worker stopped answering: %s", len(requeued), ", ".join(requeued))
        if publish is None:
            return
        due = store.claim_publishing(
            stale_seconds=settings.republish_seconds,
            unpublished_seconds=settings.reaper_interval_seconds,
            job_ids=requeued,
            cap=running_cap(settings),
        )
        for job in due:
            publish(job)

    return Periodic("lease-reaper", settings.reaper_interval_seconds, tick)
