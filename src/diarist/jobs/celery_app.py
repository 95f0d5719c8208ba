"""The Celery executor: the API publishes each job's id to a broker queue; `diarist worker` runs them.

The broker only carries wake-up calls. The job row in the database stays the single source of
truth, so the broker is never trusted for correctness:

- a delivery claims its job by id (`Store.claim_job(worker, job_id)`); a job that is already
  running (leased by a live worker), ended or canceled is acknowledged and dropped, so duplicate
  or late deliveries are harmless; so is one of a job whose key runs its cap of jobs already
  (`max_running_jobs_per_key`): it is published again once the key has room, by the worker
  whose job of that key ended, or else by the reaper;
- the run holds a lease that a thread refreshes (`runner.Lease`), and every write carries its
  fencing token, the attempt number;
- the reaper (every API process and every `diarist worker` main process) re-queues jobs whose
  lease expired and publishes them again, and re-publishes pending jobs whose message may be lost.

Delivery settings: `task_acks_late` (a message is acknowledged when its job ended, so a worker
that dies before it claimed the job leaves the message to the broker), `worker_prefetch_multiplier=1`
(a worker busy with a 4-hour job does not sit on other jobs' messages) and
`task_reject_on_worker_lost` (a child killed mid-job hands its message back instead of acking it).

Redis visibility timeout (`VISIBILITY_TIMEOUT_SECONDS`, 24 hours). Redis re-delivers a message that
was not acknowledged within this time to another worker. A short timeout (Redis's default is one
hour) would re-deliver every message whose job runs longer: harmless here (the claim drops it), but
useless broker traffic that also holds a worker slot for a moment. The timeout is therefore longer
than any job may run (`max_duration_hours`, 24 by default, at well over real time). Correctness does
not depend on it: a worker that dies mid-job loses its lease and the reaper re-queues the job within
`lease_seconds` + `reaper_interval_seconds`; a message lost before its job was claimed (a broker
restarted without persistence, a worker killed between receiving and claiming) leaves the job
`pending`, and it is published again after `republish_seconds`.

RabbitMQ (`amqp://…`) works the same way by URL. It has no visibility timeout, but closes a channel
whose delivery stays unacknowledged past its `consumer_timeout` (30 minutes by default): raise it in
rabbitmq.conf (e.g. `consumer_timeout = 90000000`) on brokers that carry jobs longer than that.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from celery import Celery, signals

from diarist.engine import Engine
from diarist.errors import DiaristError
from diarist.jobs.kinds import spec_of
from diarist.jobs.media import signing_secret
from diarist.jobs.runner import RunnerConfig, run_job
from diarist.jobs.spec import DIARIZATION_QUEUE, QUEUES
from diarist.jobs.store import Store
from diarist.jobs.tables import Job
from diarist.jobs.worker import TRANSIENT, WorkerStore, reaper, registration, runner_config, running_cap
from diarist.settings import Settings

log = logging.getLogger("diarist.jobs")
TASK = "diarist.run_job"
VISIBILITY_TIMEOUT_SECONDS = 24 * 3600
# A publish while the broker is down gives up after about a second: the job stays pending in the
# database and the reaper publishes it again, instead of holding the API request.
PUBLISH_RETRY = {"max_retries": 3, "interval_start": 0, "interval_step": 0.3, "interval_max": 0.3}


def parse_queues(text: str) -> list[str]:
    """`diarization,transcription` -> the list; ValueError naming the unknown ones."""
    queues = [q.strip() for q in text.split(",") if q.strip()]
    unknown = [q for q in queues if q not in QUEUES]
    if unknown or not queues:
        raise ValueError(f"unknown queue(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(QUEUES)}")
    return queues


@dataclass
class ChildState:
    """What one worker child process keeps between jobs: its database connection, settings and engine."""

    pid: int
    store: WorkerStore
    config: RunnerConfig
    engine: Engine


def make_celery(settings: Settings) -> Celery:
    """The Celery app on `settings.broker_url`, with the one task that runs a job by id."""
    app = Celery("diarist", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,  # the result is in the job row; no result backend
        task_default_queue=DIARIZATION_QUEUE,
        task_publish_retry_policy=PUBLISH_RETRY,
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_SECONDS},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    state: dict[str, ChildState] = {}

    def child() -> ChildState:
        # Made in the child after the fork: a database connection must not be shared across processes,
        # nor torch's threads and models.
        current = state.get("child")
        if current is None or current.pid != os.getpid():
            store = WorkerStore(settings.database, settings.database_busy_timeout_seconds, threading.Event())
            # A database that does not answer fails the delivery; the job stays pending and is published again.
            config = runner_config(settings, signing_secret(store, settings.data_dir))
            engine = Engine(settings.device, settings.worker_threads())
            current = state["child"] = ChildState(os.getpid(), store, config, engine)
        return current

    @app.task(name=TASK, bind=True)
    def execute(task, job_id: str) -> None:
        """Claim the job by id and run it; a delivery of a job that cannot be claimed is dropped."""
        here = child()
        name = f"{task.request.hostname}:{os.getpid()}"

        def claim() -> Job | None:
            return here.store.claim_job(name, job_id, cap=running_cap(settings))

        job = here.store.patiently(f"claiming job {job_id}", claim)
        if job is None:
            # Running elsewhere, ended or canceled; or waiting out a retry's pause, or for one of its
            # key's running jobs to end: then it is published again (`hand_on`, or the reaper).
            log.info("job %s cannot be claimed now: delivery dropped", job_id)
            return
        log.info("worker %s runs job %s (attempt %d)", name, job.id, job.attempts)
        run_job(job, here.store, here.config, settings.heartbeat_seconds, here.engine)
        hand_on(here.store)

    def hand_on(store: Store) -> None:
        """Publish at once the jobs that waited for a place under their key's cap, as the one just
        ended made one: the reaper would, but only at its next tick, and a key's short jobs would
        spend as long waiting as running."""
        try:
            due = store.claim_publishing(settings.republish_seconds, 0, cap=running_cap(settings))
            send = publisher(app, store)
            for waiting in due:
                send(waiting)
        except Exception as e:  # the reaper publishes them in any case
            log.warning("could not publish the jobs waiting for their key's cap (%s: %s)", type(e).__name__, e)

    return app


def publisher(app: Celery, store: Store):
    """`publish(job)`: send the job's id to its queue, and record that it went out."""

    def publish(job: Job) -> None:
        app.send_task(TASK, args=[job.id], queue=spec_of(job).queue, retry_policy=PUBLISH_RETRY)
        store.mark_published(job.id)

    return publish


def default_name() -> str:
    return f"diarist@{socket.gethostname()}-{os.getpid()}"


def run_worker(settings: Settings, queues: Sequence[str], concurrency: int, name: str | None = None) -> None:
    """Run a Celery worker in this process until it is stopped (SIGTERM/Ctrl+C: after the running jobs).

    A prefork pool of `concurrency` children, each running one job at a time on its own engine
    (`usable cores / concurrency` threads, `settings.device`), which keeps its models loaded between
    jobs. This process also registers the worker in the `workers` table and runs the reaper.
    """
    node = name or default_name()
    app = make_celery(settings)
    store = Store(settings.database, settings.database_busy_timeout_seconds)
    threads = settings.worker_threads()
    loops = [
        registration(store, settings, node, "celery", ",".join(queues), concurrency),
        reaper(store, settings, publisher(app, store)),
    ]

    @signals.worker_ready.connect(weak=False)
    def _ready(**_: object) -> None:
        # Started once the pool's children exist: threads that fork along would hold their locks.
        for loop in loops:
            loop.start()
        log.info("worker %s ready: queues %s, %d processes of %d threads", node, ",".join(queues), concurrency, threads)

    @signals.worker_shutdown.connect(weak=False)
    def _shutdown(**_: object) -> None:
        for loop in loops:
            if loop.started:
                loop.stop()
        with contextlib.suppress(*TRANSIENT, DiaristError):
            store.remove_worker(node)

    argv = [
        "worker",
        f"--hostname={node}",
        f"--queues={','.join(queues)}",
        f"--concurrency={concurrency}",
        "--pool=prefork",
        "--loglevel=INFO",
        "--without-gossip",  # no worker-to-worker chatter: the database knows the fleet
        "--without-mingle",
    ]
    app.worker_main(argv)


class CeleryExecutor:
    """The API side of the Celery executor: publishes queued jobs to the broker and runs the reaper,
    which also publishes again the jobs whose message may be lost."""

    def __init__(self, settings: Settings, store: Store):
        self.publish = publisher(make_celery(settings), store)
        self._leases = reaper(store, settings, self.publish)

    def start(self) -> None:
        self._leases.start()

    def stop(self) -> None:
        self._leases.stop()

    def reports(self) -> dict[str, Callable[[], dict[str, Any]]]:
        return {"reaper": self._leases.report}
