"""Leases, fencing tokens and the reaper, on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from diarist.jobs.store import Store
from diarist.jobs.tables import CANCELED, FAILED, PENDING, RUNNING, SUCCEEDED, Job, utcnow

from .services import drop_database, postgres_url

HOOK = "https://example.com/hook"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.fleet)])
def database_url(request, tmp_path):
    """A fresh, migrated-later database of each kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'jobs.db'}"
        return
    url = postgres_url(request.node.name)
    yield url
    drop_database(url)


@pytest.fixture
def store(database_url) -> Store:
    s = Store(database_url)
    s.migrate()
    yield s
    s.close()


def queue(store: Store, job_id: str = "j", webhook: bool = True) -> str:
    key = store.create_key("k", quota_hours=1).record
    request = {"url": "media://x", **({"webhook": HOOK} if webhook else {})}
    return store.create_job(job_id, key.id, "diarize", request, status=PENDING, reserve_seconds=30).id


def age_lease(store: Store, job_id: str, seconds: float) -> None:
    """Move a running job's last heartbeat into the past, as a worker that stopped answering leaves it."""
    with store.writing() as session:
        session.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=utcnow() - timedelta(seconds=seconds)))


def test_claim_returns_the_attempt_number_as_fencing_token(store):
    queue(store)
    first = store.claim_job("w1")
    assert (first.status, first.attempts, first.worker) == (RUNNING, 1, "w1")
    assert store.claim_job("w2") is None
    age_lease(store, "j", 60)
    assert store.reap_expired(lease_seconds=30, max_attempts=3) == ["j"]
    second = store.claim_job("w2", "j")
    assert second.attempts == 2


def test_a_stale_token_can_write_nothing(store):
    queue(store)
    old = store.claim_job("w1").attempts
    age_lease(store, "j", 60)
    store.reap_expired(30, 3)
    new = store.claim_job("w2").attempts
    assert not store.heartbeat("j", old)
    assert not store.report_progress("j", old, 50)
    store.reserve_audio("j", old, 999.0)
    assert store.finish_job("j", old, SUCCEEDED, {"diarization": ["zombie"]}, audio_seconds=1.0) is None
    assert store.heartbeat("j", new) and store.report_progress("j", new, 40)
    done = store.finish_job("j", new, SUCCEEDED, {"diarization": []}, audio_seconds=30.0)
    assert done.output == {"diarization": []} and done.attempts == 2
    job = store.get_job("j")
    assert (job.status, job.reserved_seconds, job.audio_seconds) == (SUCCEEDED, 30.0, 30.0)
    assert store.get_key(job.key_id).reserved_seconds == 0 and store.get_key(job.key_id).used_seconds == 30.0
    assert len(store.deliveries("j")) == 1


def test_heartbeat_keeps_the_lease_and_learns_of_a_cancel(store):
    queue(store)
    token = store.claim_job("w").attempts
    age_lease(store, "j", 60)
    assert store.heartbeat("j", token)  # refreshed just before the reaper looked
    assert store.reap_expired(30, 3) == []
    assert store.get_job("j").status == RUNNING
    key_id = store.get_job("j").key_id
    store.cancel_job("j", key_id)
    assert not store.heartbeat("j", token)
    assert store.get_job("j").status == CANCELED


def test_reaper_fails_the_job_after_max_attempts_once(store):
    queue(store)
    for attempt in (1, 2):
        assert store.claim_job("w").attempts == attempt
        age_lease(store, "j", 60)
        assert store.reap_expired(30, max_attempts=2) == (["j"] if attempt == 1 else [])
    assert store.reap_expired(30, max_attempts=2) == []  # a second reaper finds nothing more to do
    job = store.get_job("j")
    assert job.status == FAILED and "stopped 2 times" in job.output["error"] and "30 s" in job.output["error"]
    assert store.get_key(job.key_id).reserved_seconds == 0
    (delivery,) = store.deliveries("j")
    assert '"status":"failed"' in delivery.body


def test_claim_by_id_takes_only_a_pending_job(store):
    queue(store, "a", webhook=False)
    queue(store, "b", webhook=False)
    assert store.claim_job("w", "b").id == "b"
    assert store.claim_job("w2", "b") is None  # leased and alive: the duplicate delivery is dropped
    assert store.claim_job("w", "missing") is None
    store.finish_job("b", 1, SUCCEEDED, {"diarization": []})
    assert store.claim_job("w", "b") is None  # ended
    assert store.claim_job("w").id == "a"


def test_publishing_is_claimed_once_and_republished_when_stale(store):
    queue(store, "a", webhook=False)
    queue(store, "b", webhook=False)
    store.mark_published("a")
    now = utcnow()
    # b was never published (its publish failed): it is due once it is older than the grace period.
    assert store.claim_publishing(now - timedelta(seconds=60), now - timedelta(seconds=60)) == []
    later = utcnow() + timedelta(seconds=1)
    assert [j.id for j in store.claim_publishing(now - timedelta(seconds=60), later)] == ["b"]
    assert store.claim_publishing(now - timedelta(seconds=60), later) == []  # claimed: no other process sends it
    # Both were published before `stale_before`: their messages may be lost, both go out again.
    assert sorted(j.id for j in store.claim_publishing(later, later)) == ["a", "b"]
    store.claim_job("w", "a")
    assert [j.id for j in store.claim_publishing(utcnow() + timedelta(seconds=1), later)] == ["b"]


def test_reaped_jobs_are_published_again_at_once(store):
    queue(store, webhook=False)
    store.mark_published("j")
    store.claim_job("w")
    age_lease(store, "j", 60)
    requeued = store.reap_expired(30, 3)
    now = utcnow()
    due = store.claim_publishing(now - timedelta(seconds=60), now - timedelta(seconds=60), job_ids=requeued)
    assert [j.id for j in due] == ["j"]


def test_workers_register_and_leave(store):
    store.worker_seen("a", "celery", "diarization", 2)
    store.worker_seen("b", "local")
    store.worker_seen("a", "celery", "diarization", 2)
    assert [(w.name, w.kind, w.queues, w.concurrency) for w in store.live_workers(60)] == [
        ("a", "celery", "diarization", 2),
        ("b", "local", "", 1),
    ]
    store.remove_worker("b")
    assert [w.name for w in store.live_workers(60)] == ["a"]
    assert store.forget_workers(utcnow() - timedelta(seconds=60)) == 0
    assert store.forget_workers(utcnow() + timedelta(seconds=1)) == 1 and store.live_workers(60) == []
