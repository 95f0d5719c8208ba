"""Leases, fencing tokens and the reaper, on SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from functools import partial

import pytest
from sqlalchemy import update

from diarist.jobs import tables
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


def queue(store: Store, job_id: str = "j", webhook: bool = True, key_id: str | None = None) -> str:
    """A pending job of the key `key_id`, else of a new key; its id."""
    key_id = key_id or store.create_key("k", quota_hours=1).record.id
    request = {"url": "media://x", **({"webhook": HOOK} if webhook else {})}
    return store.create_job(job_id, key_id, "diarize", request, status=PENDING, reserve_seconds=30).id


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
    # b was never published (its publish failed): it is due once it is older than the grace period.
    assert store.claim_publishing(stale_seconds=60, unpublished_seconds=60) == []
    # (A negative age: as if a second had passed.)
    assert [j.id for j in store.claim_publishing(60, -1)] == ["b"]
    assert store.claim_publishing(60, -1) == []  # claimed: no other process sends it
    # Both were published longer ago than `stale_seconds`: their messages may be lost, both go out again.
    assert sorted(j.id for j in store.claim_publishing(-1, -1)) == ["a", "b"]
    store.claim_job("w", "a")
    assert [j.id for j in store.claim_publishing(-1, -1)] == ["b"]


def test_reaped_jobs_are_published_again_at_once(store):
    queue(store, webhook=False)
    store.mark_published("j")
    store.claim_job("w")
    age_lease(store, "j", 60)
    requeued = store.reap_expired(30, 3)
    due = store.claim_publishing(stale_seconds=60, unpublished_seconds=60, job_ids=requeued)
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


@pytest.fixture
def skew(monkeypatch) -> Callable[[float], None]:
    """`skew(seconds)` sets the clock this process's diarist code reads (`tables.utcnow`) that far off,
    as on a host whose clock is wrong."""

    def shift(seconds: float) -> None:
        class Skewed(datetime):
            @classmethod
            def now(cls, tz=None):
                return datetime.now(tz) + timedelta(seconds=seconds)

        monkeypatch.setattr(tables, "datetime", Skewed)

    return shift


def test_a_host_clock_two_minutes_off_loses_no_healthy_lease(store, skew):
    queue(store)
    skew(-120)  # the worker's host is two minutes behind: it claims and refreshes the lease
    token = store.claim_job("behind").attempts
    assert store.heartbeat("j", token)
    skew(0)
    assert store.reap_expired(lease_seconds=30, max_attempts=3) == []  # a right clock's reaper
    skew(120)  # a reaper on a host two minutes ahead
    assert store.reap_expired(lease_seconds=30, max_attempts=3) == []
    job = store.get_job("j")
    assert (job.status, job.attempts, job.worker) == (RUNNING, 1, "behind")
    skew(0)
    age_lease(store, "j", 60)  # the worker really stopped answering: that still counts
    assert store.reap_expired(lease_seconds=30, max_attempts=3) == ["j"]


def wait_over(store: Store, job_id: str) -> None:
    """End a retried job's pause now."""
    with store.writing() as session:
        session.execute(update(Job).where(Job.id == job_id).values(retry_at=utcnow() - timedelta(seconds=1)))


def test_a_retried_job_waits_its_pause_and_its_retries_are_not_worker_deaths(store):
    queue(store)
    for retry in range(2):
        token = store.claim_job("w").attempts
        assert store.retry_job("j", token, delay_seconds=60, max_retries=2)
        job = store.get_job("j")
        assert (job.status, job.retries, job.worker, job.published_at) == (PENDING, retry + 1, None, None)
        assert store.claim_job("w") is None and store.claim_job("w", "j") is None  # pausing
        assert store.claim_publishing(-1, -1) == []
        wait_over(store, "j")
        assert [j.id for j in store.claim_publishing(-1, -1)] == ["j"]
    token = store.claim_job("w").attempts
    assert token == 3
    assert not store.retry_job("j", token, delay_seconds=60, max_retries=2)  # no retry left: the caller fails it
    assert store.get_job("j").status == RUNNING
    age_lease(store, "j", 60)
    # Three attempts, but the worker stopped only once: the job runs again.
    assert store.reap_expired(lease_seconds=30, max_attempts=3) == ["j"]
    assert not store.retry_job("j", token, 0, 5)  # the old run's token can do nothing
    assert store.deliveries("j") == []


def test_a_key_runs_at_most_its_cap_of_jobs_and_the_rest_wait(store):
    key_a = store.create_key("a").record.id
    key_b = store.create_key("b").record.id
    for name in ("a1", "a2", "a3"):
        queue(store, name, webhook=False, key_id=key_a)
    queue(store, "b1", webhook=False, key_id=key_b)
    assert [store.claim_job("w", cap=2).id for _ in range(3)] == ["a1", "a2", "b1"]
    assert store.claim_job("w", cap=2) is None  # a3 waits for a1 or a2, pending
    assert store.get_job("a3").status == PENDING
    store.mark_published("a3")
    assert store.claim_job("w", "a3", cap=2) is None  # its broker message is refused...
    assert store.get_job("a3").published_at is None  # ...and spent: the reaper sends it again
    assert store.claim_publishing(-1, -1, cap=2) == []  # once the key has room, not before
    store.finish_job("a1", 1, SUCCEEDED, {"diarization": []})
    assert [j.id for j in store.claim_publishing(-1, -1, cap=2)] == ["a3"]
    assert store.claim_job("w", "a3", cap=2).status == RUNNING


def test_publishing_sends_no_more_of_a_keys_jobs_than_it_has_room_for(store):
    key_id = store.create_key("a").record.id
    for name in ("a1", "a2", "a3", "a4"):
        queue(store, name, webhook=False, key_id=key_id)
    store.claim_job("w", "a1", cap=2)
    assert [j.id for j in store.claim_publishing(-1, -1, cap=2)] == ["a2"]
    assert [j.id for j in store.claim_publishing(60, -1, cap=None)] == ["a3", "a4"]  # no cap: all


def claim_at_once(together: threading.Barrier, worker: Store) -> Job | None:
    """Claim a job of a key whose cap is one, as the other thread does the same."""
    together.wait()
    return worker.claim_job("w", cap=1)


def test_two_workers_claiming_at_once_cannot_both_take_a_keys_last_place(store, database_url):
    other = Store(database_url)  # a second worker: its own connections
    try:
        for attempt in range(20):
            key_id = store.create_key(f"k{attempt}").record.id
            for i in range(2):
                queue(store, f"j{attempt}-{i}", webhook=False, key_id=key_id)
            together = threading.Barrier(2)
            with ThreadPoolExecutor(2) as pool:
                claims = pool.map(partial(claim_at_once, together), (store, other))
                claimed = [job for job in claims if job is not None]
            assert len(claimed) == 1, attempt
    finally:
        other.close()
