"""`/healthz`, `/readyz` and `/metrics`: an app in this process on SQLite and PostgreSQL, and the live server."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import event, func, select, text, update

from diarist.api.app import create_app
from diarist.api.routes.health import Cached
from diarist.api.routes.ops import broker_check
from diarist.jobs.store import Store, head_revision
from diarist.jobs.tables import FAILED, PENDING, STATUSES, SUCCEEDED, Job, Worker, utcnow
from diarist.settings import Settings

from . import services
from .live import wait_for


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a /metrics answer by (name, sorted labels)."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def app_client(tmp_path, url: str) -> TestClient:
    """The app without its lifespan: no workers, no background threads, only the routes."""
    settings = Settings(data_dir=tmp_path / "data", database_url=url, workers=0)
    return TestClient(create_app(settings), raise_server_exceptions=False)


@pytest.fixture
def store(database_url) -> Iterator[Store]:
    s = Store(database_url)
    yield s
    s.close()


def test_an_unreachable_database_is_not_ready_and_requests_answer_503(tmp_path):
    client = app_client(tmp_path, "postgresql+psycopg://diarist:secret@127.0.0.1:1/jobs")
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"]["ok"] is False and ready.json()["status"] == "unready"
    assert "127.0.0.1" not in ready.text and "secret" not in ready.text
    answer = client.get("/v1/test", headers={"Authorization": "Bearer dia_abc_def"})
    assert answer.status_code == 503 and answer.headers["Retry-After"]
    assert set(answer.json()) == {"requestId", "message"}
    scraped = samples(client.get("/metrics").text)
    assert scraped[("diarist_database_up", ())] == 0


def test_readiness_needs_the_schema_at_the_codes_revision(tmp_path, store, database_url):
    client = app_client(tmp_path, database_url)
    store.migrate("0002")
    old = client.get("/readyz")
    assert old.status_code == 503
    checks = old.json()["checks"]
    assert checks["database"]["ok"] and not checks["migrations"]["ok"]
    assert f"at revision 0002, this code needs {head_revision()}" in checks["migrations"]["error"]
    migrated = subprocess.run(
        [sys.executable, "-m", "diarist", "migrate", "--data-dir", str(tmp_path / "cli")],
        env={**os.environ, "DIARIST_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert migrated.returncode == 0, migrated.stderr
    assert migrated.stdout == f"schema migrated from 0002 to {head_revision()}\n"
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    with store.writing() as session:  # a later release migrated further: its migrations only add columns
        session.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    assert client.get("/readyz").status_code == 200
    assert "broker" not in ready.json()["checks"]  # local executor: no broker to need
    assert client.get("/health").status_code == 200  # the older check stays


def test_job_metrics_are_what_the_database_holds(tmp_path, store, database_url):
    store.migrate()
    new = store.create_key("k")
    key = new.record
    for name in "abcdefg":
        store.create_job(name, key.id, "diarize", {"url": "media://x"}, status=PENDING)
    assert [store.claim_job(f"w{name}").id for name in "abcde"] == list("abcde")  # f and g wait
    now = utcnow()
    with store.writing() as session:  # c and d ran 20 s; a's worker went silent a minute ago; g waited 10 min
        session.execute(update(Job).where(Job.id.in_(["c", "d"])).values(started_at=now - timedelta(seconds=20)))
        session.execute(update(Job).where(Job.id == "a").values(heartbeat_at=now - timedelta(minutes=1)))
        session.execute(update(Job).where(Job.id == "g").values(created_at=now - timedelta(minutes=10)))
    store.finish_job("c", 1, SUCCEEDED, {"diarization": []}, audio_seconds=100.0)  # token: first attempt
    store.finish_job("d", 1, FAILED, {"error": "x"})
    store.worker_seen("here", "celery", "diarization", 2)
    store.worker_seen("gone", "celery")
    with store.writing() as session:  # a worker last heard from an hour ago is not counted
        session.execute(update(Worker).where(Worker.name == "gone").values(seen_at=now - timedelta(hours=1)))
    store.cancel_job("e", key.id)
    client = app_client(tmp_path, database_url)
    assert client.get("/v1/jobs/some-job-id", headers={"Authorization": f"Bearer {new.key}"}).status_code == 404
    assert client.get("/v1/jobs/other-job-id").status_code == 401  # refused before routing
    text = client.get("/metrics").text
    scraped = samples(text)
    with store.reading() as session:
        counts = dict(session.execute(select(Job.status, func.count()).group_by(Job.status)).all())
    for status in STATUSES:
        assert scraped[("diarist_jobs", (("status", status),))] == counts.get(status, 0)
    assert scraped[("diarist_queue_depth", ())] == counts[PENDING] == 2
    assert 600 <= scraped[("diarist_oldest_pending_age_seconds", ())] < 900
    assert scraped[("diarist_expired_leases", ())] == 1
    assert scraped[("diarist_workers", (("kind", "celery"),))] == 1
    assert scraped[("diarist_workers", (("kind", "local"),))] == 0
    assert scraped[("diarist_job_duration_seconds_gcount", (("status", "succeeded"),))] == 1
    assert scraped[("diarist_job_duration_seconds_gcount", (("status", "failed"),))] == 1
    assert scraped[("diarist_job_duration_seconds_bucket", (("le", "10.0"), ("status", "succeeded")))] == 0
    assert scraped[("diarist_job_duration_seconds_bucket", (("le", "30.0"), ("status", "succeeded")))] == 1
    assert scraped[("diarist_job_real_time_factor_gcount", ())] == 1
    assert 0.2 <= scraped[("diarist_job_real_time_factor_gsum", ())] < 0.3  # 20 s for 100 s of audio
    latency = (
        "diarist_http_request_duration_seconds_count",
        (("method", "GET"), ("route", "/v1/jobs/{jobId}"), ("status", "4xx")),
    )
    assert scraped[latency] == 1
    refused = (("method", "GET"), ("route", "unmatched"), ("status", "4xx"))
    assert scraped[("diarist_http_request_duration_seconds_count", refused)] == 1
    assert "some-job-id" not in text and "other-job-id" not in text  # labels carry route templates, never raw paths


def test_metrics_on_the_live_server_follow_its_jobs(server, api, sample_media):
    job = api.post("/v1/diarize", json={"url": sample_media, "model": "community-1"}).json()
    assert wait_for(api, job["jobId"])["status"] == "succeeded"
    store = Store(server.database)
    # The figures are read at most every ops_cache_seconds (10 s), and other tests' jobs may still be
    # moving: wait for a scrape that equals two equal reads around it.
    deadline = time.monotonic() + Settings().ops_cache_seconds + 20
    while time.monotonic() < deadline:
        before = store_counts(store)
        scraped = samples(httpx.get(f"{server.url}/metrics").text)
        counts = {s: scraped[("diarist_jobs", (("status", s),))] for s in STATUSES}
        if counts == before == store_counts(store):
            break
        time.sleep(0.5)
    store.close()
    assert counts == before
    assert scraped[("diarist_job_duration_seconds_gcount", (("status", "succeeded"),))] >= 1
    assert scraped[("diarist_job_real_time_factor_gcount", ())] >= 1
    assert httpx.get(f"{server.url}/readyz").status_code == 200


def recorded_statements(client: TestClient) -> list[str]:
    """The SQL the app's store runs from now on, as it runs it."""
    statements: list[str] = []
    engine = client.app.state.services.store.engine  # type: ignore[attr-defined]
    event.listen(engine, "before_cursor_execute", lambda _c, _cur, statement, *_: statements.append(statement))
    return statements


def test_scrapes_cost_the_database_nothing_between_two_reads(tmp_path, store, database_url):
    store.migrate()
    key = store.create_key("k").record
    store.create_job("a", key.id, "diarize", {"url": "media://x"}, status=PENDING)
    client = app_client(tmp_path, database_url)
    executed = recorded_statements(client)
    assert samples(client.get("/metrics").text)[("diarist_queue_depth", ())] == 1
    assert client.get("/health").json()["checks"]["database"]["ok"]
    read = len(executed)
    assert read > 0
    for _ in range(50):  # scrapers, or anyone who reaches the address
        assert client.get("/metrics").status_code == 200
        assert client.get("/health").status_code == 200
    assert executed[read:] == []


def test_the_figures_are_read_again_after_ops_cache_seconds(tmp_path, store, database_url):
    store.migrate()
    key = store.create_key("k").record
    store.create_job("a", key.id, "diarize", {"url": "media://x"}, status=PENDING)
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url, workers=0, ops_cache_seconds=1.0)
    client = TestClient(create_app(settings), raise_server_exceptions=False)
    assert samples(client.get("/metrics").text)[("diarist_queue_depth", ())] == 1
    store.create_job("b", key.id, "diarize", {"url": "media://x"}, status=PENDING)
    assert samples(client.get("/metrics").text)[("diarist_queue_depth", ())] == 1  # the last read's
    time.sleep(1.1)
    assert samples(client.get("/metrics").text)[("diarist_queue_depth", ())] == 2


def test_callers_during_a_computation_get_the_last_value_without_waiting():
    release, computing = threading.Event(), threading.Event()
    computed: list[int] = []

    def compute() -> int:
        computing.set()
        release.wait(10)
        computed.append(len(computed) + 1)
        return computed[-1]

    cached = Cached(compute, seconds=0.0)  # always stale: every call wants a new value
    release.set()
    assert cached.get() == 1
    release.clear()
    computing.clear()
    got: list[int] = []
    slow = threading.Thread(target=lambda: got.append(cached.get()))
    slow.start()
    assert computing.wait(10)
    started = time.monotonic()
    assert cached.get() == 1  # the last value, not a second computation queued behind the first
    assert time.monotonic() - started < 1
    release.set()
    slow.join(10)
    assert got == [2] and computed == [1, 2]


OPS_TOKEN = "ops-7b1f0c9e4a2d4e8fb3c6a5d2e1f09876"


def test_an_ops_token_guards_the_metrics_and_the_checks(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", workers=0, ops_token=OPS_TOKEN, auth_failures_per_minute=3)
    Store(settings.database).migrate()
    client = TestClient(create_app(settings), raise_server_exceptions=False)
    operator = {"Authorization": f"Bearer {OPS_TOKEN}"}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {OPS_TOKEN[:-1]}"}):
        refused = client.get("/metrics", headers=headers)
        assert refused.status_code == 401 and set(refused.json()) == {"requestId", "message"}
        assert "operator token" in refused.json()["message"] and "diarist_" not in refused.text
    scraped = client.get("/metrics", headers=operator)
    assert scraped.status_code == 200 and ("diarist_database_up", ()) in samples(scraped.text)
    # Probes without a token keep their status code and their one word, and count on no limit.
    for _ in range(5):
        assert client.get("/health").json() == {"status": "ok"}
        assert client.get("/readyz").json() == {"status": "ready"}
        assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/health", headers=operator).json()["checks"]["database"]["ok"]
    assert client.get("/readyz", headers=operator).json()["checks"]["migrations"]["ok"]
    # Wrong tokens count on the address's failure limit, as wrong API keys do: then even the right one waits.
    assert client.get("/health", headers={"Authorization": "Bearer wrong"}).json() == {"status": "ok"}
    blocked = client.get("/metrics", headers=operator)
    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) > 0


def store_counts(store: Store) -> dict[str, int]:
    with store.reading() as session:
        counts = dict(session.execute(select(Job.status, func.count()).group_by(Job.status)).all())
    return {s: counts.get(s, 0) for s in STATUSES}


@pytest.mark.fleet
def test_the_broker_check_says_whether_the_broker_answers():
    pytest.importorskip("kombu", reason="Celery (and kombu) come with the celery executor")
    assert broker_check(services.redis_url("ops"))["ok"]
    down = broker_check("redis://:hunter2@127.0.0.1:1/0")
    assert not down["ok"] and "hunter2" not in down["error"] and "127.0.0.1" not in down["error"]


def server_time_ms(response: httpx.Response) -> float:
    """The `dur` of the answer's `Server-Timing: app;dur=<ms>` header."""
    name, _, duration = response.headers["server-timing"].partition(";dur=")
    assert name == "app", response.headers["server-timing"]
    return float(duration)


def test_each_answer_says_how_long_the_server_took(tmp_path):
    from .test_backend import held_lock

    settings = Settings(data_dir=tmp_path / "data", workers=0, database_busy_timeout_seconds=0.3)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        key = Store(settings.database).create_key("k").key
        client.headers["Authorization"] = f"Bearer {key}"
        for path in ("/v1/test", "/healthz", "/v1/jobs/unknown"):  # answered, a probe, an error
            start = time.perf_counter()
            answer = client.get(path)
            assert 0 < server_time_ms(answer) <= (time.perf_counter() - start) * 1000, path
        with held_lock(settings.data_dir / "diarist.db"):
            start = time.perf_counter()
            busy = client.post("/v1/diarize", json={"url": "https://example.com/a.wav"})
            took = (time.perf_counter() - start) * 1000
    # The submit waited the busy timeout for the write lock, then answered 503: the server's time says so.
    assert busy.status_code == 503 and 300 <= server_time_ms(busy) <= took
