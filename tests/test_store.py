"""The job store on real SQLite and PostgreSQL databases: atomic claims across processes and threads,
requeues, retention, migrations, and PostgreSQL's failures turned into the service's typed errors."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from alembic import command
from sqlalchemy import text

from diarist.api.auth import KeyCache
from diarist.audio import PeaksMeter, stream_audio
from diarist.jobs.media import MediaStore
from diarist.jobs.retention import expire
from diarist.jobs.store import Store, alembic_config, head_revision
from diarist.jobs.tables import FAILED, PENDING, RUNNING, SUCCEEDED, ApiKey, Job, Media
from diarist.settings import Settings

from .conftest import SAMPLE


@pytest.fixture
def store(database_url) -> Iterator[Store]:
    s = Store(database_url)
    s.migrate()
    yield s
    s.close()


def claim_all(url: str, name: str, found) -> None:
    store = Store(url)
    while (job := store.claim_job(name)) is not None:
        found.put(job.id)
    store.close()


def queue_jobs(store: Store, count: int) -> list[str]:
    key = store.create_key("k").record
    return [
        store.create_job(f"job-{i:03d}", key.id, "diarize", {"url": "media://x"}, status=PENDING).id
        for i in range(count)
    ]


@pytest.mark.slow
def test_many_workers_never_claim_a_job_twice(store):
    ids = queue_jobs(store, 60)
    context = multiprocessing.get_context("spawn")
    found = context.Queue()
    url = store.engine.url.render_as_string(hide_password=False)
    workers = [context.Process(target=claim_all, args=(url, f"w{i}", found)) for i in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    claimed = [found.get(timeout=5) for _ in range(len(ids))]
    assert sorted(claimed) == ids
    assert found.empty()
    assert all(store.get_job(i).status == RUNNING and store.get_job(i).attempts == 1 for i in ids)


def test_threads_sharing_one_store_claim_each_job_once(store):
    ids = queue_jobs(store, 120)
    claimed: list[tuple[str, str]] = []
    start = threading.Barrier(8)

    def claim(name: str) -> None:
        start.wait()
        while (job := store.claim_job(name)) is not None:
            claimed.append((job.id, name))

    threads = [threading.Thread(target=claim, args=(f"t{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(job_id for job_id, _ in claimed) == ids
    jobs = {job_id: store.get_job(job_id) for job_id in ids}
    assert all(jobs[job_id].worker == name and jobs[job_id].attempts == 1 for job_id, name in claimed)
    assert all(job.started_at is not None for job in jobs.values())


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


def test_progress_and_finish_belong_to_the_claiming_attempt(store):
    key = store.create_key("k").record
    store.create_job("j", key.id, "diarize", {"url": "media://x"}, status=PENDING)
    token = store.claim_job("w1").attempts
    assert not store.report_progress("j", token + 1, 50)
    assert store.finish_job("j", token + 1, SUCCEEDED, {}) is None
    store.cancel_job("j", key.id)
    assert not store.report_progress("j", token, 60)  # the worker learns the job was canceled
    assert store.finish_job("j", token, SUCCEEDED, {"diarization": []}) is None
    assert store.get_job("j").status == "canceled"


def test_retention_deletes_old_outputs_and_uploads(store, tmp_path):
    media = MediaStore(tmp_path / "media")
    key = store.create_key("k").record
    store.create_job("old", key.id, "diarize", {"url": "media://a"}, status=PENDING)
    store.claim_job("w")
    meter = PeaksMeter()
    for _block in meter.metered(stream_audio(SAMPLE)):
        pass
    store.finish_job("old", 1, SUCCEEDED, {"diarization": []}, audio_seconds=3.0, peaks=meter.peaks())
    assert store.set_speaker_names("old", key.id, {"SPEAKER_00": "Alice"}) == {"SPEAKER_00": "Alice"}
    assert store.get_peaks("old") == meter.peaks()  # the bytes come back as they went in
    path = media.path(key.id, "a")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"audio")
    store.record_upload(key.id, "a", 5)
    expire(store, media, tmp_path / "downloads", result_ttl=timedelta(hours=1), media_ttl=timedelta(hours=1))
    assert store.get_job("old").output is not None and path.exists()
    expire(store, media, tmp_path / "downloads", result_ttl=timedelta(0), media_ttl=timedelta(0))
    job = store.get_job("old")
    assert job.output is None and job.status == SUCCEEDED
    # The waveform overview and the speaker names go with the output they belong to.
    assert store.get_peaks("old") is None and job.speaker_names is None
    assert store.set_speaker_names("old", key.id, {"SPEAKER_00": "Bob"}) is None
    assert not path.exists() and store.get_media(key.id, "a") is None
    assert [j.id for j in store.list_jobs(key.id, None, 10)] == ["old"]


def test_uploads_over_2_gib_are_recorded(store):
    key = store.create_key("k").record
    store.record_upload(key.id, "big.wav", 3 * 1024**3)
    assert store.get_media(key.id, "big.wav").size == store.storage_used(key.id) == 3 * 1024**3


def test_migrations_go_down_and_up_again(store):
    store.migrate("0002")  # migrate() only upgrades: a store at head stays there
    assert store.schema_revision() == head_revision()
    config = alembic_config()
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0001")
    assert store.schema_revision() == "0001"
    store.migrate()
    assert store.schema_revision() == head_revision()
    key = store.create_key("k", quota_hours=1).record
    assert store.get_key(key.id).reserved_seconds == 0.0


def test_migrations_are_idempotent_and_recorded(store):
    store.migrate()
    with store.engine.connect() as connection:
        assert connection.execute(text("select version_num from alembic_version")).scalar() == head_revision()
    assert store.schema_revision() == head_revision()


def test_keys_are_stored_hashed(store):
    new = store.create_key("k", rate_limit_per_minute=5, quota_hours=2)
    with store.engine.connect() as connection:
        dump = " ".join(str(row) for row in connection.execute(text("select * from api_keys")))
    # The secret is all after the second underscore: it may hold underscores of its own (base64url).
    assert new.key not in dump and new.key.split("_", 2)[2] not in dump
    keys = KeyCache(store, seconds=0)  # reads the store every time
    assert keys.authenticate(new.key).quota_seconds == 7200
    assert keys.authenticate(new.key[:-1] + ("A" if new.key[-1] != "A" else "B")) is None
    assert keys.authenticate("Bearer nonsense") is None
    assert store.revoke_key(new.record.id) and keys.authenticate(new.key) is None


def test_the_key_cache_reads_a_key_once_per_its_seconds_and_checks_the_secret_every_time(store, monkeypatch):
    new = store.create_key("k")
    reads: list[str] = []
    read_key = store.get_key

    def counted(key_id: str):
        reads.append(key_id)
        return read_key(key_id)

    monkeypatch.setattr(store, "get_key", counted)

    cache = KeyCache(store, seconds=0.5)
    assert cache.fresh(new.key) is None
    assert all(cache.authenticate(new.key).id == new.record.id for _ in range(20))
    assert len(reads) == 1 and cache.fresh(new.key).id == new.record.id
    # The same id with another secret is refused from the held record.
    assert cache.authenticate(new.key[:-1] + ("A" if new.key[-1] != "A" else "B")) is None
    assert store.revoke_key(new.record.id)
    time.sleep(0.6)
    assert cache.fresh(new.key) is None and cache.authenticate(new.key) is None and len(reads) == 2
    # Ids that match no key are not held: made-up ones cannot fill the cache.
    assert cache.authenticate("dia_0123456789ab_secret") is None and cache.fresh("dia_0123456789ab_secret") is None
    assert len(reads) == 3 and cache.authenticate("Bearer nonsense") is None and len(reads) == 3


def test_the_lean_reads_give_what_the_orm_gives(store):
    """get_job, get_media and get_key read through RowReader, not a Session: every column, value and type the same."""
    key = store.create_key("k", rate_limit_per_minute=5, quota_hours=2).record
    store.create_job("j", key.id, "diarize", {"url": "media://a.wav", "numSpeakers": 2}, PENDING, reserve_seconds=1.5)
    store.claim_job("w")
    store.finish_job("j", 1, SUCCEEDED, {"diarization": [{"speaker": "SPEAKER_00", "start": 0.5}]}, audio_seconds=29.5)
    store.record_upload(key.id, "a.wav", 123, origin="http://replica-a:8000")
    with store.reading() as session:
        records = {"job": session.get(Job, "j"), "media": session.get(Media, (key.id, "a.wav"))}
        records["key"] = session.get(ApiKey, key.id)
    lean = {"job": store.get_job("j"), "media": store.get_media(key.id, "a.wav"), "key": store.get_key(key.id)}
    for name, record in records.items():
        for column in type(record).__table__.columns:
            value = getattr(record, column.key)
            assert getattr(lean[name], column.key) == value, (name, column.key)
            assert type(getattr(lean[name], column.key)) is type(value), (name, column.key)
    assert lean["job"].finished_at.tzinfo is not None and lean["job"].output["diarization"][0]["start"] == 0.5
    assert store.get_job("missing") is None and store.get_media(key.id, "b.wav") is None and store.get_key("x") is None
    assert store.get_job("j", key_id="another key") is None


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


def test_own_checkpoints_leave_the_wal_to_checkpoint(tmp_path):
    """The API's store: no commit copies the WAL back (it would hold the process's write lock
    meanwhile, issue 22); `checkpoint` does, from its own thread."""
    store = Store(f"sqlite:///{tmp_path / 'own.db'}", own_checkpoints=True)
    plain = Store(f"sqlite:///{tmp_path / 'plain.db'}")
    try:
        for s in (store, plain):
            s.migrate()
        with store.engine.connect() as connection, plain.engine.connect() as other:
            assert connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
            assert other.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 1000
        # Past SQLite's 1000 pages, a commit would have copied the WAL back: nothing is copied yet.
        queue_jobs(store, 300)
        pages, copied = store.checkpoint()
        assert pages > 1000 and copied == pages
        assert store.checkpoint() == (pages, pages)  # nothing new to copy
    finally:
        store.close()
        plain.close()
