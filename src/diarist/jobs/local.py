"""The embedded executor: N worker processes next to the API server, kept alive while it runs.

The queue is the store itself: each process claims pending jobs (`worker.work`), so a worker
started anywhere else against the same database takes part in the same way. A job queued here
wakes the idle ones at once instead of at their next poll.
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
from multiprocessing.synchronize import Event
from typing import Any

from diarist.jobs.background import Periodic
from diarist.jobs.store import Store
from diarist.jobs.tables import Job
from diarist.jobs.worker import TRANSIENT, reaper, work
from diarist.settings import Settings

log = logging.getLogger("diarist.jobs")
PR_SET_PDEATHSIG = 1
SUPERVISE_SECONDS = 1.0  # how often the server looks for dead workers


def _die_with_parent() -> None:
    """Ask Linux to kill this process when its parent dies, so no orphan keeps running jobs."""
    # Not Linux: no prctl, but the parent check in the work loop still stops the worker.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _worker_process(settings: Settings, name: str, wake: Event, stop: Event) -> None:
    _die_with_parent()
    # Requests must stay fast while every core runs the models: the server wins any contention.
    os.nice(settings.worker_nice)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C goes to the server, which stops us
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    work(settings, name, wake, stop)


class LocalExecutor:
    """N worker processes on this machine, replaced when one dies (its job goes back in the queue),
    and the lease reaper."""

    def __init__(self, settings: Settings, store: Store):
        self.settings, self.store = settings, store
        self._leases = reaper(store, settings)
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
        """Start the workers and the reaper; on SQLite, first re-queue the jobs this server left running."""
        if self.store.engine.dialect.name == "sqlite":
            # One server per SQLite file (the data dir lock): every running job was this server's.
            requeued = self.store.requeue_jobs(None, self.settings.max_attempts)
            if requeued:
                log.info("re-queued %d jobs that were running when the server stopped", requeued)
        with self._lock:
            for _ in range(self.settings.workers):
                self._spawn()
        self._supervisor.start()
        self._leases.start()

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

    def _report(self) -> dict[str, Any]:
        """The supervisor's health, and how many worker processes are alive."""
        with self._lock:
            alive = sum(process.is_alive() for process in self._processes.values())
        return {**self._supervisor.report(), "workers": alive, "deadNotRequeued": len(self._dead)}

    def reports(self) -> dict[str, Callable[[], dict[str, Any]]]:
        return {"workers": self._report, "reaper": self._leases.report}

    def publish(self, job: Job) -> None:
        """Wake idle workers: a job was queued."""
        self.wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the workers; a job still running goes back to the queue for the next start."""
        self.stop_event.set()
        self._supervisor.stop()
        self._leases.stop()
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
