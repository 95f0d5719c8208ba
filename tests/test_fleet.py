"""The celery executor under failure: real PostgreSQL, Redis or RabbitMQ, and `diarist worker` processes.

Short leases (3 s, heartbeats every second) so that a lost worker's job moves on quickly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

import pytest
from sqlalchemy import select

from diarist.jobs.spec import DiarizeSpec
from diarist.jobs.store import Store
from diarist.jobs.tables import Job

from .conftest import SAMPLE
from .live import Fleet, Key, LiveServer, LiveWorker, create_key, upload, wait_for
from .services import RABBITMQ, drop_database, postgres_url, redis_url, require
from .test_fetch_cancel import Trickler, assert_one_key_cannot_fill_every_worker

pytestmark = pytest.mark.fleet


@dataclass
class Cluster:
    server: LiveServer
    workers: list[LiveWorker]
    store: Store

    def worker_of(self, job: Job) -> LiveWorker:
        """The worker whose pool child runs `job` (its row names `<worker name>:<pid>`)."""
        return next(w for w in self.workers if job.worker and job.worker.startswith(f"{w.name}:"))

    def revive(self) -> None:
        """Start again the workers a test killed."""
        for i, worker in enumerate(self.workers):
            if worker.process is None or worker.process.poll() is not None:
                self.workers[i] = LiveWorker(worker.server, worker.data_dir, worker.name).start()


def start_cluster(tmp_path_factory, name: str, broker_url: str, workers: int, **fleet_options) -> Cluster:
    """A database named after `name`, one API server and `workers` workers; `fleet_options` go to `Fleet`."""
    fleet = Fleet(postgres_url(name), broker_url, **fleet_options)
    server = LiveServer(tmp_path_factory.mktemp(f"{name}-api"), fleet=fleet).start()
    started = [
        LiveWorker(server, tmp_path_factory.mktemp(f"{name}-w{i}"), f"{name}{i}@test").start() for i in range(workers)
    ]
    return Cluster(server, started, Store(fleet.database_url))


def stop_cluster(cluster: Cluster) -> None:
    for worker in cluster.workers:
        worker.stop()
    cluster.server.stop()
    cluster.store.close()
    drop_database(cluster.server.database)


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory) -> Iterator[Cluster]:
    # One job per key at once on the two workers, so that a key cannot take both (and a test's jobs queue).
    cluster = start_cluster(tmp_path_factory, "fleetredis", redis_url("fleet"), workers=2, max_running_jobs_per_key=1)
    yield cluster
    stop_cluster(cluster)


@pytest.fixture
def cluster(redis_cluster) -> Cluster:
    """The Redis cluster with every worker alive and no job left over from the test before."""
    redis_cluster.revive()
    with redis_cluster.store.reading() as session:
        unfinished = session.scalars(select(Job.id).where(Job.status.in_(("pending", "running")))).all()
    for job_id in unfinished:
        poll(partial(redis_cluster.store.get_job, job_id), lambda j: j.status not in ("pending", "running"), 600)
    return redis_cluster


def poll(read: Callable[[], Job], done: Callable[[Job], bool], timeout: float = 120) -> Job:
    deadline = time.monotonic() + timeout
    while not done(job := read()):
        assert time.monotonic() < deadline, f"job {job.id} still {job.status} (progress {job.progress})"
        time.sleep(0.1)
    return job


def ended_job(job: Job) -> bool:
    return job.status not in ("pending", "running")


def submit_long(cluster: Cluster, key: Key, long_audio, **body) -> tuple[str, Job]:
    """Queue the 5-minute job and wait until a worker is in the middle of it (progress reported)."""
    with cluster.server.client(key) as api:
        media = upload(api, long_audio, "long.wav")
        job_id = api.post("/v1/diarize", json={"url": media, "model": "community-1", **body}).json()["jobId"]
    running = poll(lambda: cluster.store.get_job(job_id), lambda j: j.status == "running" and (j.progress or 0) > 0)
    return job_id, running


def new_key(cluster: Cluster) -> Key:
    return create_key(cluster.server.data_dir, "fleet", "--rate-limit", "0")


def test_kill_9_of_a_worker_mid_job_another_completes_it_once(cluster, long_audio, peer):
    job_id, running = submit_long(cluster, new_key(cluster), long_audio, webhook=f"{peer.url}/hook")
    assert running.attempts == 1
    first = cluster.worker_of(running)
    first.kill()
    done = poll(lambda: cluster.store.get_job(job_id), lambda j: j.status not in ("pending", "running"), 600)
    assert done.status == "succeeded", done.output
    assert done.attempts == 2
    assert cluster.worker_of(done) is not first
    assert done.output["diarization"] and done.audio_seconds == pytest.approx(300, abs=1)
    (delivery,) = cluster.store.deliveries(job_id)
    assert f'"jobId":"{job_id}"' in delivery.body and '"status":"succeeded"' in delivery.body
    posts = [r for r in peer.wait(1) if r.method == "POST"]
    assert [r.json()["jobId"] for r in posts] == [job_id]


def test_a_paused_worker_past_its_lease_cannot_overwrite_the_winner(cluster, long_audio):
    job_id, running = submit_long(cluster, new_key(cluster), long_audio)
    zombie = cluster.worker_of(running)
    zombie.signal(signal.SIGSTOP)
    try:
        won = poll(lambda: cluster.store.get_job(job_id), lambda j: j.status not in ("pending", "running"), 600)
    finally:
        zombie.signal(signal.SIGCONT)
    assert won.status == "succeeded" and won.attempts == 2
    assert cluster.worker_of(won) is not zombie
    # Back from its pause, the zombie learns from its lease that attempt 1 is no longer the job's.
    refusals = (f"job {job_id} (attempt 1) is no longer this worker's", "the end of attempt 1 was refused")
    deadline = time.monotonic() + 60
    while not any(r in zombie.log() for r in refusals):
        assert time.monotonic() < deadline, zombie.log()[-3000:]
        time.sleep(0.2)
    time.sleep(2)  # time for any write the zombie might still try
    after = cluster.store.get_job(job_id)
    assert (after.status, after.attempts, after.worker) == ("succeeded", 2, won.worker)
    assert (after.output, after.finished_at, after.updated_at) == (won.output, won.finished_at, won.updated_at)


@pytest.mark.slow
def test_restarting_the_api_replica_that_holds_the_uploads_fails_none_of_their_jobs(cluster):
    """kill -9 of the only API replica while its uploads' jobs wait, back 25 s later (a rolling upgrade):
    the workers find it gone, queue each job again for later, and every job succeeds once it is back."""
    key = new_key(cluster)
    with cluster.server.client(key) as api:
        media = [upload(api, SAMPLE, f"restart{i}.wav") for i in range(3)]
        jobs = [api.post("/v1/diarize", json={"url": url, "model": "community-1"}).json()["jobId"] for url in media]
    # One job of the key runs at a time (two workers): the others fetch their upload while the replica is down.
    poll(lambda: cluster.store.get_job(jobs[0]), lambda j: j.status == "running")
    cluster.server.kill()
    time.sleep(25)
    cluster.server.start()
    ended = [poll(partial(cluster.store.get_job, job_id), ended_job, 300) for job_id in jobs]
    assert [(j.status, j.output.get("error")) for j in ended] == [("succeeded", None)] * 3
    assert sum(j.retries for j in ended) >= 1  # the outage was met, and waited out
    assert all(j.attempts - j.retries == 1 for j in ended)  # no worker died


@pytest.mark.slow
def test_one_keys_slow_downloads_leave_a_fleet_worker_to_other_keys(cluster):
    slow = Trickler(max_bytes=120, chunk=16 * 1024)
    try:
        assert_one_key_cannot_fill_every_worker(cluster.server, slow)
    finally:
        slow.close()


@pytest.mark.slow
def test_a_keys_job_waiting_for_its_cap_starts_as_the_running_one_ends(tmp_path_factory):
    """The reaper ticks once a minute here; the key's second job, refused by the idle worker while the
    first ran (one job per key on two workers), is published by the worker that ended the first."""
    cluster = start_cluster(
        tmp_path_factory,
        "handon",
        redis_url("handon"),
        workers=2,
        reaper_interval_seconds=60,
        max_running_jobs_per_key=1,
    )
    try:
        key = new_key(cluster)
        with cluster.server.client(key) as api:
            media = [upload(api, SAMPLE, f"turn{i}.wav") for i in range(2)]
            jobs = [api.post("/v1/diarize", json={"url": url, "model": "community-1"}).json()["jobId"] for url in media]
        ended = [poll(partial(cluster.store.get_job, job_id), ended_job, 300) for job_id in jobs]
        first, second = sorted(ended, key=lambda job: job.started_at)
        assert (first.status, second.status) == ("succeeded", "succeeded")
        assert second.started_at >= first.finished_at  # it waited for the first...
        assert (second.started_at - first.finished_at).total_seconds() < 10  # ...not for the reaper
    finally:
        stop_cluster(cluster)


@pytest.fixture(scope="module")
def rabbit_cluster(tmp_path_factory) -> Iterator[Cluster]:
    require("rabbitmq")
    cluster = start_cluster(tmp_path_factory, "fleetrabbit", RABBITMQ, workers=1)
    yield cluster
    stop_cluster(cluster)


def test_cancel_stops_a_job_on_a_rabbitmq_worker_and_frees_it(rabbit_cluster, long_audio):
    cluster = rabbit_cluster
    key = new_key(cluster)
    job_id, _ = submit_long(cluster, key, long_audio)
    (worker,) = cluster.workers
    stopped = f"job {job_id} (attempt 1) was canceled or taken over while running"
    with cluster.server.client(key) as api:
        assert api.delete(f"/v1/jobs/{job_id}").json()["status"] == "canceled"
        deadline = time.monotonic() + 30  # a generous bound: it stops at its next heartbeat or progress report
        while stopped not in worker.log():
            assert time.monotonic() < deadline, worker.log()[-3000:]
            time.sleep(0.2)
        # The only worker is free again: a short job runs to completion.
        media = upload(api, SAMPLE, "short.wav")
        short = api.post("/v1/diarize", json={"url": media, "model": "community-1"}).json()["jobId"]
        assert wait_for(api, short)["status"] == "succeeded"
    assert cluster.store.get_job(job_id).status == "canceled"


def test_a_publish_that_fails_loses_no_job(tmp_path):
    """The broker is down at submit: the job stays pending, and the reaper's loop publishes it later."""
    import redis

    from diarist.jobs.celery_app import CeleryExecutor, make_celery, publisher
    from diarist.jobs.queue import JobQueue
    from diarist.jobs.worker import reaper
    from diarist.settings import Settings

    url = postgres_url("publish")
    # A database no worker listens on, so the message is still in its queue when the test reads it.
    broker = redis_url("publish")
    try:
        store = Store(url)
        store.migrate()
        key = store.create_key("k").record
        closed = Settings(data_dir=tmp_path, database_url=url, broker_url="redis://127.0.0.1:9/0")
        down = JobQueue(store, CeleryExecutor(closed, store))
        job = down.submit(key.id, DiarizeSpec(url="media://a", transcription=True))
        assert store.get_job(job.id).status == "pending" and store.get_job(job.id).published_at is None
        # A moment later, a process with a reachable broker runs its reaper loop once.
        time.sleep(1.1)
        working = Settings(data_dir=tmp_path, database_url=url, broker_url=broker, reaper_interval_seconds=1)
        loop = reaper(store, working, publisher(make_celery(working), store))
        loop.start()
        poll(lambda: store.get_job(job.id), lambda j: j.published_at is not None, 30)
        loop.stop()
        assert loop.report()["failures"] == 0
        client = redis.Redis.from_url(broker)
        ours = [m for m in client.lrange("transcription", 0, -1) if job.id.encode() in m]
        assert ours  # routed by its transcription flag
        for message in ours:
            client.lrem("transcription", 0, message)
        store.close()
    finally:
        drop_database(url)


def diarist_command(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "diarist", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})})


def test_worker_and_serve_refuse_what_cannot_work(tmp_path):
    bad = diarist_command("worker", "--data-dir", str(tmp_path), "--queues", "diarization,gpu")
    assert bad.returncode == 1
    assert "--queues: unknown queue(s) gpu; choose from diarization, transcription" in bad.stderr
    both = diarist_command("serve", "--data-dir", str(tmp_path), "--workers", "2", env={"DIARIST_EXECUTOR": "celery"})
    assert both.returncode == 1
    assert "the API runs no jobs itself in celery mode" in both.stderr
    lease = diarist_command("serve", "--data-dir", str(tmp_path), env={"DIARIST_HEARTBEAT_SECONDS": "20"})
    assert lease.returncode == 1 and "heartbeat_seconds (20) must be at most half of lease_seconds (30)" in lease.stderr
