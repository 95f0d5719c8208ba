"""The job store on a real SQLite file: atomic claims across processes, requeues, retention, migrations."""

from __future__ import annotations

import multiprocessing
from datetime import timedelta

import pytest
from sqlalchemy import text

from diarist.jobs.media import MediaStore
from diarist.jobs.retention import expire
from diarist.jobs.store import Store
from diarist.jobs.tables import FAILED, PENDING, RUNNING, SUCCEEDED
from diarist.settings import Settings


@pytest.fixture
def store(tmp_path) -> Store:
    s = Store(f"sqlite:///{tmp_path / 'jobs.db'}")
    s.migrate()
    return s


def claim_all(url: str, name: str, found) -> None:
    store = Store(url)
    while (job := store.claim_job(name)) is not None:
        found.put(job.id)


def test_many_workers_never_claim_a_job_twice(store):
    key = store.create_key("k").record
    ids = []
    for i in range(60):
        ids.append(store.create_job(f"job-{i:02d}", key.id, "diarize", {"url": "media://x"}, status=PENDING).id)
    context = multiprocessing.get_context("spawn")
    found = context.Queue()
    url = str(store.engine.url)
    workers = [context.Process(target=claim_all, args=(url, f"w{i}", found)) for i in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    claimed = [found.get(timeout=5) for _ in range(len(ids))]
    assert sorted(claimed) == ids
    assert found.empty()
    assert all(store.get_job(i).status == RUNNING and store.get_job(i).attempts == 1 for i in ids)


def test_requeue_gives_up_after_max_attempts_and_tells_the_webhook(store):
    key = store.create_key("k").record
    store.create_job("j", key.id, "diarize", {"url": "media://x", "webhook": "https://example.com/h"}, status=PENDING)
    for attempt in (1, 2):
        assert store.claim_job("w").attempts == attempt
        assert store.requeue_jobs("w", max_attempts=2) == (1 if attempt == 1 else 0)
    job = store.get_job("j")
    assert job.status == FAILED and "stopped 2 times" in job.output["error"]
    (delivery,) = store.deliveries("j")
    assert '"status":"failed"' in delivery.body and '"output"' not in delivery.body


def test_progress_and_finish_belong_to_the_claiming_worker(store):
    key = store.create_key("k").record
    store.create_job("j", key.id, "diarize", {"url": "media://x"}, status=PENDING)
    store.claim_job("w1")
    assert not store.report_progress("j", "w2", 50)
    assert store.finish_job("j", "w2", SUCCEEDED, {}) is None
    store.cancel_job("j", key.id)
    assert not store.report_progress("j", "w1", 60)  # the worker learns the job was canceled
    assert store.finish_job("j", "w1", SUCCEEDED, {"diarization": []}) is None
    assert store.get_job("j").status == "canceled"


def test_retention_deletes_old_outputs_and_uploads(store, tmp_path):
    media = MediaStore(tmp_path / "media")
    key = store.create_key("k").record
    store.create_job("old", key.id, "diarize", {"url": "media://a"}, status=PENDING)
    store.claim_job("w")
    store.finish_job("old", "w", SUCCEEDED, {"diarization": []}, audio_seconds=3.0)
    path = media.path(key.id, "a")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"audio")
    store.record_upload(key.id, "a", 5)
    expire(store, media, tmp_path / "downloads", result_ttl=timedelta(hours=1), media_ttl=timedelta(hours=1))
    assert store.get_job("old").output is not None and path.exists()
    expire(store, media, tmp_path / "downloads", result_ttl=timedelta(0), media_ttl=timedelta(0))
    job = store.get_job("old")
    assert job.output is None and job.status == SUCCEEDED
    assert not path.exists() and store.get_media(key.id, "a") is None
    assert [j.id for j in store.list_jobs(key.id, None, 10)] == ["old"]


def test_migrations_are_idempotent_and_recorded(store):
    store.migrate()
    with store.engine.connect() as connection:
        assert connection.execute(text("select version_num from alembic_version")).scalar() == "0004"


def test_keys_are_stored_hashed(store):
    new = store.create_key("k", rate_limit_per_minute=5, quota_hours=2)
    with store.engine.connect() as connection:
        dump = " ".join(str(row) for row in connection.execute(text("select * from api_keys")))
    assert new.key not in dump and new.key.split("_")[2] not in dump
    assert store.authenticate(new.key).quota_seconds == 7200
    assert store.authenticate(new.key[:-1] + ("A" if new.key[-1] != "A" else "B")) is None
    assert store.authenticate("Bearer nonsense") is None
    assert store.revoke_key(new.record.id) and store.authenticate(new.key) is None


def test_settings_precedence_flags_env_file(tmp_path, monkeypatch):
    (tmp_path / "diarist.toml").write_text('port = 9000\nworkers = 3\nallowed_hosts = ["a.local"]\n')
    monkeypatch.setenv("DIARIST_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DIARIST_WORKERS", "2")
    monkeypatch.setenv("DIARIST_ALLOWED_HOSTS", "b.local, 10.0.0.0/8")
    settings = Settings.load(port=None, workers=5)
    assert settings.port == 9000  # file
    assert settings.workers == 5  # flag over env over file
    assert settings.allowed_hosts == ["b.local", "10.0.0.0/8"]  # env over file
    assert settings.database == f"sqlite:///{tmp_path / 'diarist.db'}"
    monkeypatch.setenv("DIARIST_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(FileNotFoundError):
        Settings.load()


def test_pending_is_what_workers_take(store):
    key = store.create_key("k").record
    store.create_job("j", key.id, "diarize", {"url": "media://x"})
    assert store.claim_job("w") is None  # created, not yet queued
    store.requeue_jobs(None, max_attempts=3)  # a server start queues jobs it recorded but never queued
    assert store.get_job("j").status == PENDING
    assert store.claim_job("w").id == "j"
