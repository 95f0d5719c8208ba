"""The fleet under chaos: a Redis restart, PostgreSQL connections cut mid-job, a burst of 1,000 jobs
through two API replicas and three workers, and a worker on another (network-namespace) host.

Every test reads its verdict from the job database: each job ended once (terminal status, one
output, a sane attempt count) with exactly one webhook row, whatever the broker or the logs say.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import scipy.io.wavfile
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from diarist.jobs.store import Store
from diarist.jobs.tables import Job, WebhookDelivery

from .conftest import SAMPLE
from .live import TERMINAL, Fleet, LiveServer, LiveWorker, Peer, create_key
from .services import POSTGRES, REDIS, drop_database, postgres_url, redis_url, require
from .test_fleet import poll, start_cluster, stop_cluster

pytestmark = pytest.mark.fleet

MAX_ATTEMPTS = 3  # the default `max_attempts`
REDIS_START = [
    "redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379", "--save", "",
    "--appendonly", "no", "--dir", "/var/lib/redis", "--logfile", "/var/log/redis/ci.log",
]  # fmt: skip


def wav_bytes(audio: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    scipy.io.wavfile.write(buffer, 16000, (audio * 32767).astype(np.int16))
    return buffer.getvalue()


def ended_once(store: Store, job_ids: list[str], webhooks: bool = True) -> list[Job]:
    """Assert from the database that every job ended exactly once; return the rows."""
    with store.reading() as session:
        jobs = session.scalars(select(Job).where(Job.id.in_(job_ids))).all()
        rows = Counter(session.scalars(select(WebhookDelivery.job_id).where(WebhookDelivery.job_id.in_(job_ids))))
    assert len(jobs) == len(job_ids)
    for job in jobs:
        assert job.status == "succeeded", (job.id, job.status, job.output)
        assert job.output and "diarization" in job.output and job.finished_at is not None
        assert 1 <= job.attempts <= MAX_ATTEMPTS
    if webhooks:
        assert rows == dict.fromkeys(job_ids, 1)  # one webhook row per job, none for a second ending
    else:
        assert not rows
    return list(jobs)


def wait_ended(store: Store, job_ids: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with store.reading() as session:
            left = session.scalar(
                select(func.count()).where(Job.id.in_(job_ids), Job.status.not_in(TERMINAL)).select_from(Job)
            )
        if not left:
            return
        assert time.monotonic() < deadline, f"{left} of {len(job_ids)} jobs not ended after {timeout} s"
        time.sleep(0.5)


def submit(server: LiveServer, key, url: str, webhook: str | None = None) -> str:
    body = {"url": url, "model": "community-1", **({"webhook": webhook} if webhook else {})}
    with server.client(key) as api:
        answer = api.post("/v1/diarize", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()["jobId"]


# --- Redis restarted with jobs queued and running -------------------------------------------------


def restart_redis() -> None:
    """Stop the machine's Redis without saving (queued messages are lost) and start it again."""
    subprocess.run(["redis-cli", "-u", REDIS, "shutdown", "nosave"], capture_output=True, timeout=10)
    deadline = time.monotonic() + 10
    while subprocess.run(["redis-cli", "-u", REDIS, "ping"], capture_output=True).returncode == 0:
        assert time.monotonic() < deadline, "Redis did not stop"
        time.sleep(0.1)
    subprocess.run(REDIS_START, check=True, timeout=10, capture_output=True)
    while subprocess.run(["redis-cli", "-u", REDIS, "ping"], capture_output=True, text=True).stdout.strip() != "PONG":
        assert time.monotonic() < deadline, "Redis did not start again"
        time.sleep(0.1)


@pytest.fixture
def redis_restartable() -> None:
    require("redis")
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        message = "redis-server and redis-cli are needed to restart Redis"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def test_jobs_queued_and_running_when_redis_restarts_each_end_once(tmp_path_factory, redis_restartable, peer):
    # republish_seconds short: the messages that Redis loses are sent again within seconds.
    cluster = start_cluster(tmp_path_factory, "chaosredis", redis_url("chaosredis"), workers=2, republish_seconds=2.0)
    try:
        key = create_key(cluster.server.data_dir, "chaos", "--rate-limit", "0")
        peer.files["/sample.wav"] = SAMPLE.read_bytes()
        jobs = [submit(cluster.server, key, f"{peer.url}/sample.wav", f"{peer.url}/hook") for _ in range(5)]
        # Both workers busy, three jobs waiting in Redis.
        poll(
            lambda: cluster.store.get_job(jobs[0]),
            lambda _: sum(cluster.store.get_job(j).status == "running" for j in jobs) == 2,
        )
        restart_redis()
        states = Counter(cluster.store.get_job(j).status for j in jobs)
        assert states["pending"] >= 1, states  # some jobs lost their message with Redis
        wait_ended(cluster.store, jobs, 300)
        ended_once(cluster.store, jobs)
    finally:
        stop_cluster(cluster)


# --- the worker's PostgreSQL connections terminated mid-job ---------------------------------------


def terminate_connections(database_url: str) -> int:
    """pg_terminate_backend on every other connection to the database; how many there were."""
    admin = create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            return len(
                connection.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE datname = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": make_url(database_url).database},
                ).all()
            )
    finally:
        admin.dispose()


def test_jobs_end_once_when_their_database_connections_are_terminated(tmp_path_factory, peer):
    require("redis")
    cluster = start_cluster(tmp_path_factory, "chaospg", redis_url("chaospg"), workers=1)
    try:
        key = create_key(cluster.server.data_dir, "chaos", "--rate-limit", "0")
        peer.files["/sample.wav"] = SAMPLE.read_bytes()
        jobs = [submit(cluster.server, key, f"{peer.url}/sample.wav", f"{peer.url}/hook") for _ in range(2)]
        poll(lambda: cluster.store.get_job(jobs[0]), lambda j: j.status == "running")
        # Cuts every 0.3 s while the first job runs, so some land inside the worker's lease, progress
        # or finish transactions (and the others on its pooled connections, found dead at checkout).
        cuts = []
        while len(cuts) < 10 and cluster.store.get_job(jobs[0]).status == "running":
            cuts.append(terminate_connections(cluster.server.database))
            time.sleep(0.3)
        assert len(cuts) >= 3 and all(cuts), cuts  # the cuts landed while the job ran, on open connections
        wait_ended(cluster.store, jobs, 300)
        ended_once(cluster.store, jobs)
    finally:
        stop_cluster(cluster)


# --- a burst of 1,000 short jobs through two API replicas and three workers ------------------------

BURST = 1000


def test_a_burst_of_1000_jobs_through_2_replicas_and_3_workers_each_ends_once(tmp_path_factory, sample_audio):
    """A default-suite test of about 100 s (2 shared cores, 1 s jobs at about 10 jobs/s over three workers)."""
    require("redis")
    # The default republish delay: a backlog this long is re-sent while it waits, and the duplicates
    # must be dropped at the claim, not run.
    fleet = Fleet(postgres_url("chaosburst"), redis_url("chaosburst"), republish_seconds=60.0)
    replicas = [LiveServer(tmp_path_factory.mktemp(f"burst-api{i}"), fleet=fleet) for i in range(2)]
    workers: list[LiveWorker] = []
    peer = Peer()
    try:
        for replica in replicas:
            replica.start()
        one = {"DIARIST_THREADS_PER_WORKER": "1"}
        for i in range(3):
            data_dir = tmp_path_factory.mktemp(f"burst-w{i}")
            workers.append(LiveWorker(replicas[i % 2], data_dir, f"burst{i}@test", env=one).start())
        key = create_key(replicas[0].data_dir, "burst", "--rate-limit", "0")
        peer.files["/short.wav"] = wav_bytes(sample_audio[:16000])  # one second of speech
        audio, hook = f"{peer.url}/short.wav", f"{peer.url}/hook"
        with ThreadPoolExecutor(8) as pool:
            jobs = list(pool.map(lambda i: submit(replicas[i % 2], key, audio, hook), range(BURST)))
        store = Store(fleet.database_url)
        try:
            wait_ended(store, jobs, 1800)
            rows = ended_once(store, jobs)
        finally:
            store.close()
        assert {r.worker.split(":")[0] for r in rows} == {w.name for w in workers}  # all three took jobs
        assert len({r.id for r in rows}) == BURST
    finally:
        for worker in workers:
            worker.stop()
        for replica in replicas:
            replica.stop()
        peer.close()
        drop_database(fleet.database_url)


# --- a worker on another host: a network namespace behind a veth pair -----------------------------

HOST_SIDE, WORKER_SIDE = "10.213.7.1", "10.213.7.2"  # a /24 that exists only between our namespaces


class Forwarder:
    """A TCP forwarder: connections to (host, port) are piped to `target`, so the worker's host
    reaches the services that listen only on this host's loopback."""

    def __init__(self, host: str, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server((host, 0))
        self.port = self.listener.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:  # the service is down (e.g. restarting): this connection fails, the next may not
                client.close()
                continue
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.closed = True
        self.listener.close()


def ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)


@pytest.fixture
def worker_host() -> Iterator[str]:
    """A network namespace linked to this one by a veth pair: HOST_SIDE here, WORKER_SIDE there."""
    name = f"diarist-{secrets.token_hex(3)}"
    veth = f"dv{secrets.token_hex(3)}"
    made = ip("netns", "add", name)
    if made.returncode != 0:
        message = f"cannot create a network namespace (ip netns add: {made.stderr.strip() or 'ip missing'})"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    try:
        for command in (
            ("link", "add", veth, "type", "veth", "peer", "name", f"{veth}w"),
            ("link", "set", f"{veth}w", "netns", name),
            ("addr", "add", f"{HOST_SIDE}/24", "dev", veth),
            ("link", "set", veth, "up"),
            ("-n", name, "addr", "add", f"{WORKER_SIDE}/24", "dev", f"{veth}w"),
            ("-n", name, "link", "set", f"{veth}w", "up"),
            ("-n", name, "link", "set", "lo", "up"),
        ):
            done = ip(*command)
            assert done.returncode == 0, f"ip {' '.join(command)}: {done.stderr}"
        yield name
    finally:
        ip("link", "del", veth)  # also removes its peer in the namespace
        ip("netns", "del", name)


def test_a_worker_on_another_host_runs_a_job_with_its_own_disk(tmp_path_factory, worker_host, sample_audio):
    require("redis")
    database, broker = postgres_url("chaosnetns"), redis_url("chaosnetns")
    fleet = Fleet(database, broker)
    services = [
        Forwarder(HOST_SIDE, ("127.0.0.1", make_url(database).port or 5432)),
        Forwarder(HOST_SIDE, ("127.0.0.1", int(broker.rsplit(":", 1)[1].split("/")[0]))),
    ]
    # The worker's view: the same services, at the host's address on the veth.
    remote = Fleet(
        make_url(database).set(host=HOST_SIDE, port=services[0].port).render_as_string(hide_password=False),
        f"redis://{HOST_SIDE}:{services[1].port}/{broker.rsplit('/', 1)[1]}",
    )
    peer = Peer(HOST_SIDE)  # the audio's URL and the webhook receiver, reachable from both hosts
    allowed = {"DIARIST_ALLOWED_HOSTS": HOST_SIDE}
    server = LiveServer(tmp_path_factory.mktemp("netns-api"), fleet=fleet, env=allowed)
    worker = LiveWorker(
        server,
        tmp_path_factory.mktemp("netns-worker"),
        "remote@test",
        env=allowed,
        fleet=remote,
        prefix=("ip", "netns", "exec", worker_host),
    )
    try:
        server.start()
        worker.start()
        # The worker cannot reach the API host's loopback services directly: only through the veth.
        unreachable = subprocess.run(
            ["ip", "netns", "exec", worker_host, "redis-cli", "-u", f"{REDIS}/0", "ping"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        assert unreachable.stdout.strip() != "PONG"
        key = create_key(server.data_dir, "remote", "--rate-limit", "0")
        peer.files["/sample.wav"] = SAMPLE.read_bytes()
        job_id = submit(server, key, f"{peer.url}/sample.wav", f"{peer.url}/hook")
        store = Store(database)
        try:
            wait_ended(store, [job_id], 300)
            (job,) = ended_once(store, [job_id])
        finally:
            store.close()
        assert job.worker.startswith("remote@test:") and job.attempts == 1
        assert not (worker.data_dir / "media").exists()  # nothing passed through a shared disk
        (hook,) = [r for r in peer.wait(2) if r.method == "POST"]
        assert hook.json()["jobId"] == job_id and hook.json()["status"] == "succeeded"
    finally:
        worker.stop()
        server.stop()
        peer.close()
        for forwarder in services:
            forwarder.close()
        drop_database(database)
