"""Worker processes: each one claims pending jobs from the store and runs them, one at a time.

`LocalWorkers` keeps N of them alive next to the API server. The queue is the store itself,
so a worker started anywhere else against the same database takes part in the same way.
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
from multiprocessing.synchronize import Event

from diarist.jobs.media import MediaStore
from diarist.jobs.net import NetPolicy
from diarist.jobs.runner import RunnerConfig, run_job
from diarist.jobs.store import Store
from diarist.settings import Settings

log = logging.getLogger("diarist.jobs")
IDLE_POLL_SECONDS = 0.5  # how often an idle worker looks for work when nobody wakes it
PR_SET_PDEATHSIG = 1


def runner_config(settings: Settings) -> RunnerConfig:
    return RunnerConfig(
        media=MediaStore(settings.media_dir),
        downloads=settings.downloads_dir,
        policy=net_policy(settings),
        max_input_bytes=settings.max_input_bytes,
        max_duration_seconds=settings.max_duration_hours * 3600,
        asr_models=settings.asr_models_dir,
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


def work(settings: Settings, name: str, wake: Event, stop: Event) -> None:
    """Claim and run jobs until `stop` is set or the parent process goes away."""
    import torch

    threads = settings.threads_per_worker or max(1, (os.cpu_count() or 1) // max(1, settings.workers))
    torch.set_num_threads(threads)
    store = Store(settings.database)
    config = runner_config(settings)
    parent = os.getppid()
    log.info("worker %s ready (%d threads)", name, threads)
    while not stop.is_set() and os.getppid() == parent:
        job = store.claim_job(name)
        if job is not None:
            log.info("worker %s runs job %s", name, job.id)
            run_job(job, store, config, name)
        elif wake.wait(IDLE_POLL_SECONDS):
            wake.clear()
    store.close()


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
        self._supervisor: threading.Thread | None = None
        self._lock = threading.Lock()

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
        self._supervisor = threading.Thread(target=self._supervise, name="worker-supervisor", daemon=True)
        self._supervisor.start()

    def _supervise(self) -> None:
        while not self.stop_event.wait(1.0):
            with self._lock:
                for name, process in list(self._processes.items()):
                    if process.is_alive() or self.stop_event.is_set():
                        continue
                    log.warning("worker %s died (exit code %s); starting another", name, process.exitcode)
                    del self._processes[name]
                    self.store.requeue_jobs(name, self.settings.max_attempts)
                    self._spawn()

    def notify(self) -> None:
        """Wake idle workers: a job was queued."""
        self.wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the workers; a job still running goes back to the queue for the next start."""
        self.stop_event.set()
        with self._lock:
            for process in self._processes.values():
                process.join(timeout=0.1)
                if process.is_alive():
                    process.terminate()
            for name, process in self._processes.items():
                process.join(timeout)
                self.store.requeue_jobs(name, self.settings.max_attempts + 1)
            self._processes.clear()
