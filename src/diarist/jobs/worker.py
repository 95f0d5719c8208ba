"""Worker processes: each one claims pending jobs from the store and runs them, one at a time.

`LocalWorkers` keeps N of them alive next to the API server. The queue is the store itself,
so a worker started anywhere else against the same database takes part in the same way.
Every worker process registers in the `workers` table and refreshes its row while it lives;
`reaper` is the loop every API and `diarist worker` process runs to re-queue jobs whose lease
expired, whichever executor ran them.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import socket
import threading
from collections.abc import Callable
from datetime import timedelta
from multiprocessing.synchronize import Event
from typing import Any, Protocol, TypeVar

from diarist.errors import StorageFullError, StoreUnavailableError
from diarist.jobs.background import Periodic, backoff
from diarist.jobs.media import MediaStore, signing_secret
from diarist.jobs.net import NetPolicy
from diarist.jobs.runner import RunnerConfig, run_job
from diarist.jobs.store import Store
from diarist.jobs.tables import Job, utcnow
from diarist.settings import Settings

log = logging.getLogger("diarist.jobs")
IDLE_POLL_SECONDS = 0.5  # how often an idle worker looks for work when nobody wakes it
PR_SET_PDEATHSIG = 1
SUPERVISE_SECONDS = 1.0  # how often the server looks for dead workers
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
    )


def net_policy(settings: Settings) -> NetPolicy:
    return NetPolicy(
        allowed_hosts=tuple(settings.allowed_hosts),
        connect_timeout=settings.fetch_connect_timeout,
        read_timeout=settings.fetch_read_timeout,
        max_redirects=settings.fetch_max_redirects,
        total_timeout=settings.fetch_total_timeout,
    )


def _die_with_parent() -> None:
    """Ask Linux to kill this process when its parent dies, so no orphan keeps running jobs."""
    # Not Linux: no prctl, but the parent check in the work loop still stops the worker.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


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
        job = store.patiently("claiming a job", lambda: store.claim_job(name))
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
    re-queued jobs to the broker, and again those whose message may be lost or never went out."""

    def tick() -> None:
        requeued = store.reap_expired(settings.lease_seconds, settings.max_attempts)
        if requeued:
            log.warning("re-queued %d jobs whose worker stopped answering: %s", len(requeued), ", ".join(requeued))
        if publish is None:
            return
        now = utcnow()
        due = store.claim_publishing(
            stale_before=now - timedelta(seconds=settings.republish_seconds),
            unpublished_before=now - timedelta(seconds=settings.reaper_interval_seconds),
            job_ids=requeued,
        )
        for job in due:
            publish(job)

    return Periodic("lease-reaper", settings.reaper_interval_seconds, tick)


def _worker_process(settings: Settings, name: str, wake: Event, stop: Event) -> None:
    _die_with_parent()
    # Requests must stay fast while every core runs the models: the server wins any contention.
    os.nice(settings.worker_nice)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C goes to the server, which stops us
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    work(settings, name, wake, stop)


class LocalWorkers:
    """N worker processes on this machine, replaced when one dies (its job goes back in the queue)."""

    def __init__(self, settings: Settings, store: Store):
        self.settings, self.store = settings, store
        self._context = multiprocessing.get_context("spawn")  # no torch state inherited from the server
        self.wake = self._context.Event()
        self.stop_event = self._context.Event()
        self._processes: dict[str, multiprocessing.process.BaseProcess] = {}
        self._spawned = 0
        # Survives a busy or full database: Periodic logs the failure and tries again later.
        self._supervisor = Periodic("worker-supervisor", SUPERVISE_SECONDS, self._replace_dead_workers)
        self._lock = threading.Lock()
        self._dead: list[str] = []  # workers that died and whose jobs are not re-queued yet

    def _spawn(self) -> None:
        self._spawned += 1
        name = f"{socket.gethostname()}:{os.getpid()}:{self._spawned}"
        process = self._context.Process(
            target=_worker_process, args=(self.settings, name, self.wake, self.stop_event), name=name, daemon=True
        )
        process.start()
        self._processes[name] = process

    def start(self) -> None:
        with self._lock:
            for _ in range(self.settings.workers):
                self._spawn()
        self._supervisor.start()

    def _replace_dead_workers(self) -> None:
        with self._lock:
            for name, process in list(self._processes.items()):
                if process.is_alive() or self.stop_event.is_set():
                    continue
                log.warning("worker %s died (exit code %s); starting another", name, process.exitcode)
                del self._processes[name]
                self._dead.append(name)
                self._spawn()
        # A dead worker's job goes back to the queue once the database takes the write; outside
        # the lock, so that `report` answers while the database makes us wait.
        while self._dead:
            self.store.requeue_jobs(self._dead[0], self.settings.max_attempts)
            self._dead.pop(0)

    def report(self) -> dict[str, Any]:
        """The supervisor's health, and how many worker processes are alive."""
        with self._lock:
            alive = sum(process.is_alive() for process in self._processes.values())
        return {**self._supervisor.report(), "workers": alive, "deadNotRequeued": len(self._dead)}

    def notify(self) -> None:
        """Wake idle workers: a job was queued."""
        self.wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the workers; a job still running goes back to the queue for the next start."""
        self.stop_event.set()
        self._supervisor.stop()
        with self._lock:
            for process in self._processes.values():
                process.join(timeout=0.1)
                if process.is_alive():
                    process.terminate()
            for name, process in self._processes.items():
                process.join(timeout)
                try:
                    self.store.requeue_jobs(name, self.settings.max_attempts + 1)
                except TRANSIENT as e:  # the next start re-queues every running job anyway
                    log.warning("could not re-queue the jobs of worker %s: %s", name, e)
            self._processes.clear()
