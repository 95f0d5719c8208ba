"""State shared by API replicas (issue 10, item 5): rate limits in Redis, one signing secret in the
database, and uploads that workers on other machines fetch from the replica holding them.

The replicas are real `diarist serve` processes with separate data dirs sharing one SQLite file (the
job store) and one Redis; only the database file is common to them, never a media folder.
"""

from __future__ import annotations

import multiprocessing
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from diarist.jobs.media import make_token, read_token, signing_secret
from diarist.jobs.runner import InputError, OriginUnavailable, RunnerConfig, fetch_upload, origin_policy
from diarist.jobs.store import QuotaExceededError, Store
from diarist.net import NetPolicy, TooLargeError, UrlRefused, check_url
from diarist.settings import Settings

from .conftest import SAMPLE
from .live import LiveServer, create_key, free_port, upload, wait_for
from .services import redis_url, require


@pytest.fixture
def shared_db(tmp_path, monkeypatch) -> str:
    """One job database for every replica and CLI call of the test."""
    url = f"sqlite:///{tmp_path / 'shared' / 'diarist.db'}"
    monkeypatch.setenv("DIARIST_DATABASE_URL", url)
    return url


def replica(tmp_path: Path, name: str, workers: int = 0, **env: str) -> LiveServer:
    return LiveServer(tmp_path / name, env=env, workers=workers).start()


# --- settings ----------------------------------------------------------------------------------


def test_redis_is_the_broker_only_in_celery_mode(tmp_path):
    assert Settings(data_dir=tmp_path).shared_redis is None
    assert Settings(data_dir=tmp_path, redis_url="redis://r:6379/4").shared_redis == "redis://r:6379/4"
    fleet = {"data_dir": tmp_path, "executor": "celery", "workers": 0}
    assert Settings(**fleet, broker_url="redis://broker:6379/0").shared_redis == "redis://broker:6379/0"
    assert Settings(**fleet, broker_url="amqp://guest@rabbit//").shared_redis is None
    assert Settings(data_dir=tmp_path, broker_url="redis://broker:6379/0").shared_redis is None  # local executor


def test_internal_url_default_and_validation(tmp_path, monkeypatch):
    assert Settings(data_dir=tmp_path, port=8123).own_internal_url == "http://127.0.0.1:8123"
    assert Settings(data_dir=tmp_path, host="::1", port=8).own_internal_url == "http://[::1]:8"
    monkeypatch.setattr("socket.gethostname", lambda: "api-7")
    assert Settings(data_dir=tmp_path, host="0.0.0.0").own_internal_url == "http://api-7:8000"
    given = Settings(data_dir=tmp_path, internal_url="https://api.internal:9000/")
    assert given.own_internal_url == "https://api.internal:9000"
    for bad in ("ftp://x", "api:8000", "http://x/?a=1"):
        with pytest.raises(ValueError, match="internal_url"):
            Settings(data_dir=tmp_path, internal_url=bad)
    with pytest.raises(ValueError, match="redis_url"):
        Settings(data_dir=tmp_path, redis_url="http://127.0.0.1:6379")


# --- one signing secret ------------------------------------------------------------------------


def test_replicas_starting_together_agree_on_one_secret(tmp_path):
    url = f"sqlite:///{tmp_path / 'one.db'}"
    Store(url).migrate()
    found: list[bytes] = []

    def start(i: int) -> None:
        found.append(signing_secret(Store(url), tmp_path / f"replica{i}"))

    threads = [threading.Thread(target=start, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(found) == 8 and len(set(found)) == 1 and len(found[0]) == 64


def test_a_laptops_secret_file_moves_into_the_database(tmp_path):
    laptop, other = tmp_path / "laptop", tmp_path / "other"
    for data_dir, text in ((laptop, "old-laptop-secret"), (other, "another-secret")):
        data_dir.mkdir()
        (data_dir / "secret").write_text(text + "\n")
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store.migrate()
    token = make_token(b"old-laptop-secret", "get", "abc", "talk.wav", 60)  # handed out before the upgrade
    assert signing_secret(store, laptop) == b"old-laptop-secret"
    assert signing_secret(store, other) == b"old-laptop-secret"  # the first one stored wins
    assert (laptop / "secret").read_text() == "old-laptop-secret\n"  # left for a downgrade
    assert read_token(signing_secret(store, other), "get", token) == ("abc", "talk.wav")


# --- quotas: already in the database, they hold across processes -------------------------------


def reserve_many(url: str, key_id: str, tries: int) -> int:
    """In a process of its own, as a replica would: how many 10 s jobs the key's quota let through."""
    store, taken = Store(url), 0
    for _ in range(tries):
        try:
            store.create_job(uuid.uuid4().hex, key_id, "diarize", {}, reserve_seconds=10.0)
            taken += 1
        except QuotaExceededError:
            pass
    return taken


@pytest.mark.slow
def test_quota_holds_across_processes(tmp_path):
    url = f"sqlite:///{tmp_path / 'quota.db'}"
    store = Store(url)
    store.migrate()
    key = store.create_key("q", quota_hours=100 / 3600).record  # room for exactly ten 10 s jobs
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        taken = pool.starmap(reserve_many, [(url, key.id, 10)] * 4)
    assert sum(taken) == 10
    assert store.get_key(key.id).reserved_seconds == pytest.approx(100.0)


# --- rate limits shared through Redis ----------------------------------------------------------


@pytest.mark.fleet
def test_two_replicas_share_one_rate_limit(tmp_path, shared_db):
    require("redis")
    redis = redis_url("shared")
    a = replica(tmp_path, "a", DIARIST_REDIS_URL=redis)
    b = replica(tmp_path, "b", DIARIST_REDIS_URL=redis)
    try:
        key = create_key(a.data_dir, "shared", "--rate-limit", "5")
        with a.client(key) as on_a, b.client(key) as on_b:
            answers = [(on_a, on_b)[i % 2].get("/v1/test") for i in range(5)]
            assert [r.status_code for r in answers] == [200] * 5
            assert [r.headers["x-ratelimit-remaining"] for r in answers] == ["4", "3", "2", "1", "0"]
            for api in (on_a, on_b):
                limited = api.get("/v1/test")
                assert limited.status_code == 429, limited.text
                assert limited.headers["x-ratelimit-limit"] == "5"
                assert 1 <= int(limited.headers["retry-after"]) <= 60
            assert on_a.get("/health").json()["checks"]["rateLimits"]["ok"] is True
    finally:
        a.stop()
        b.stop()


def start_redis(port: int) -> subprocess.Popen:
    """A Redis of this test's own, so that stopping it disturbs no one else's."""
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).stdout.strip() != b"PONG":
        assert process.poll() is None and time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.1)
    return process


@pytest.mark.slow
def test_redis_down_lets_requests_through_and_health_says_so(tmp_path, shared_db):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    redis = start_redis(port)
    server = replica(tmp_path, "a", DIARIST_REDIS_URL=f"redis://127.0.0.1:{port}/0")
    try:
        key = create_key(server.data_dir, "limited", "--rate-limit", "2")
        with server.client(key) as api:
            assert [api.get("/v1/test").headers["x-ratelimit-remaining"] for _ in range(2)] == ["1", "0"]
            assert api.get("/v1/test").status_code == 429
            redis.terminate()
            redis.wait(10)
            # Fail open: the key is over its limit, yet it is served, without rate-limit headers.
            down = [api.get("/v1/test") for _ in range(3)]
            assert [r.status_code for r in down] == [200] * 3
            assert all("x-ratelimit-remaining" not in r.headers for r in down)
            health = httpx.get(f"{server.url}/health")
            assert health.status_code == 503 and health.json()["status"] == "degraded"
            assert "rate limits are not enforced" in health.json()["checks"]["rateLimits"]["error"]
            assert "rate limits are not enforced" in server.log()
            redis = start_redis(port)  # back, empty: limits count again at once (health's ping resumes them)
            assert httpx.get(f"{server.url}/health").status_code == 200
            assert [api.get("/v1/test").status_code for _ in range(3)] == [200, 200, 429]
    finally:
        server.stop()
        redis.terminate()
        redis.wait(10)


# --- uploads on one replica, jobs run anywhere -------------------------------------------------


@pytest.mark.slow
def test_upload_on_a_job_via_b_runs_on_a_worker_with_its_own_data_dir(tmp_path, shared_db, sample_result):
    a = replica(tmp_path, "a")
    b = replica(tmp_path, "b")
    worker = replica(tmp_path, "worker", workers=1)
    try:
        key = create_key(a.data_dir, "fleet", "--rate-limit", "0")
        with a.client(key) as on_a, b.client(key) as on_b:
            media = upload(on_a, SAMPLE, "talk.wav")
            created = on_b.post("/v1/diarize", json={"url": media, "model": "community-1"})
            assert created.status_code == 200, created.text
            job = wait_for(on_b, created.json()["jobId"])
        assert job["status"] == "succeeded", job
        assert job["output"]["diarization"] == [t.to_dict() for t in sample_result.turns]
        # Only replica A ever held the file; the worker's copy went with its job.
        assert len(list((a.data_dir / "media").rglob("*"))) == 2  # the key's folder and the file
        for other in (b, worker):
            assert not list((other.data_dir / "media").rglob("*"))
        assert not list((worker.data_dir / "downloads").iterdir())
        assert "runs job" in worker.log()
    finally:
        for server in (worker, b, a):
            server.stop()


@pytest.mark.slow
def test_origin_fetch_limits_errors_and_refusals(tmp_path, shared_db):
    a = replica(tmp_path, "a")
    try:
        key = create_key(a.data_dir, "k", "--rate-limit", "0")
        store = Store(shared_db)
        secret = signing_secret(store, tmp_path)
        config = RunnerConfig(
            media=None,  # type: ignore[arg-type]  # fetch_upload reads no local media
            downloads=tmp_path / "downloads",
            policy=NetPolicy(),
            max_input_bytes=1000,
            max_duration_seconds=60,
            asr_models=tmp_path,
            secret=secret,
        )
        config.downloads.mkdir()
        dest = config.downloads / "job"
        with a.client(key) as api:
            upload(api, b"x" * 900, "small.bin")
            upload(api, b"x" * 1001, "big.bin")
        assert store.get_media(key.id, "small.bin").origin == a.url
        fetch_upload(a.url, key.id, "small.bin", dest, config, lambda _fraction: None)
        assert dest.read_bytes() == b"x" * 900
        with pytest.raises(TooLargeError, match="larger than"):
            fetch_upload(a.url, key.id, "big.bin", dest, config, lambda _fraction: None)
        with pytest.raises(InputError, match="does not exist"):
            fetch_upload(a.url, key.id, "never.bin", dest, config, lambda _fraction: None)
        forged = RunnerConfig(**{**config.__dict__, "secret": b"not the secret"})
        with pytest.raises(InputError, match="could not pass it on"):
            fetch_upload(a.url, key.id, "small.bin", dest, forged, lambda _fraction: None)
        # A replica that does not answer (restarting) may answer later: the job is tried again, not failed.
        with pytest.raises(OriginUnavailable, match="could not pass it on"):
            fetch_upload(f"http://127.0.0.1:{free_port()}", key.id, "small.bin", dest, config, lambda _fraction: None)

        # The route itself: a forged or expired token is refused, the real one is served.
        served = httpx.get(f"{a.url}/v1/media/download/{make_token(secret, 'get', key.id, 'small.bin', 60)}")
        assert served.status_code == 200 and served.content == b"x" * 900
        for token in (
            make_token(b"forged", "get", key.id, "small.bin", 60),
            make_token(secret, "get", key.id, "small.bin", -1),
            make_token(secret, "put", key.id, "small.bin", 60),
        ):
            assert httpx.get(f"{a.url}/v1/media/download/{token}").status_code == 403

        # The origin's exception is for the origin fetch only: a user URL to the same address is refused.
        internal = f"{a.url}/v1/media/download/{make_token(secret, 'get', key.id, 'small.bin', 60)}"
        with pytest.raises(UrlRefused):
            check_url(internal, NetPolicy())
        check_url(internal, origin_policy(NetPolicy(), a.url))
        assert origin_policy(NetPolicy(), a.url).max_redirects == 0
        with a.client(key) as api:
            refused = api.post("/v1/diarize", json={"url": internal})
        assert refused.status_code == 400 and "url" in refused.text
    finally:
        a.stop()
