"""Backend hardening, against real failures: a held SQLite lock, a full tmpfs, killed workers,
concurrent submits, crafted upload tokens, and the permissions of everything the server writes."""

from __future__ import annotations

import os
import socket
import sqlite3
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import timedelta
from hashlib import sha256
from pathlib import Path

import httpx
import numpy as np
import pytest
import scipy.io.wavfile

from diarist.jobs.media import MediaStore, make_token
from diarist.jobs.retention import expire
from diarist.jobs.store import Store
from diarist.jobs.tables import FAILED, PENDING, SUCCEEDED

from .conftest import SAMPLE
from .live import LiveServer, create_key, run_cli, upload, wait_for
from .test_audio import piped_flac
from .test_durability import children


@contextmanager
def held_lock(db: Path) -> Iterator[None]:
    """Hold SQLite's write lock on `db` from another connection, as a stuck writer would."""
    connection = sqlite3.connect(db, isolation_level=None)
    connection.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        connection.rollback()
        connection.close()


def worker_pids(server_pid: int) -> list[int]:
    """The worker processes of a server (not multiprocessing's resource tracker)."""
    return [pid for pid in children(server_pid) if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]


def poll(read, until, timeout: float = 60):
    """Call `read()` until `until(value)`; the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if until(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


@pytest.fixture(scope="module")
def umask_022_server(tmp_path_factory):
    """A server whose data dir was made under umask 022, writes waiting at most 1 s for the lock."""
    previous = os.umask(0o022)
    try:
        data_dir = tmp_path_factory.mktemp("busy") / "state"
        key = create_key(data_dir, "busy", "--rate-limit", "0")
        live = LiveServer(data_dir, env={"DIARIST_DATABASE_BUSY_TIMEOUT_SECONDS": "1"}).start()
    finally:
        os.umask(previous)
    yield live, key
    live.stop()


# --- 1. background threads and workers survive database errors; /health tells ------------------


@pytest.mark.slow
def test_killed_worker_while_the_database_is_locked_then_everything_recovers(umask_022_server, tmp_path, sample_audio):
    server, key = umask_022_server
    sixty_s = tmp_path / "sixty.wav"
    scipy.io.wavfile.write(sixty_s, 16000, (np.tile(sample_audio, 2) * 32767).astype(np.int16))
    with server.client(key) as api, httpx.Client(base_url=server.url) as anonymous:
        assert anonymous.get("/health").json()["status"] == "ok"
        media = upload(api, sixty_s, "sixty.wav")
        job_id = api.post("/v1/diarize", json={"url": media, "model": "community-1"}).json()["jobId"]
        wait_for(api, job_id, statuses=("running",))
        with held_lock(server.data_dir / "diarist.db"):
            (worker,) = worker_pids(server.process.pid)
            os.kill(worker, 9)
            # A write that cannot get the lock is a 503 with Retry-After, not a 500 after 30 s.
            busy = api.post("/v1/diarize", json={"url": media})
            assert busy.status_code == 503
            assert int(busy.headers["retry-after"]) > 0 and "database" in busy.json()["message"]
            assert set(busy.json()) == {"requestId", "message"}
            degraded = poll(lambda: anonymous.get("/health"), lambda r: r.json()["checks"]["workers"]["failures"] >= 2)
            assert degraded.status_code == 503 and degraded.json()["status"] == "degraded"
            assert degraded.json()["checks"]["database"]["ok"]  # reads still work under a write lock
            assert "database" in degraded.json()["checks"]["workers"]["lastError"]
            assert api.get(f"/v1/jobs/{job_id}").json()["status"] == "running"
        # The lock is gone: the supervisor re-queues the job, a new worker runs it, and new jobs run.
        assert wait_for(api, job_id, timeout=300)["status"] == "succeeded"
        sample = upload(api, SAMPLE, "s.wav")
        after = api.post("/v1/diarize", json={"url": sample, "model": "community-1"}).json()["jobId"]
        assert wait_for(api, after, timeout=300)["status"] == "succeeded"
        healthy = poll(lambda: anonymous.get("/health"), lambda r: r.status_code == 200)
        assert healthy.status_code == 200 and healthy.json()["status"] == "ok", healthy.text
    assert Store(server.database).get_job(job_id).attempts == 2
    assert "worker-supervisor failed" in server.log()


def test_a_locked_database_answers_503_within_the_busy_timeout_however_many_wait(tmp_path):
    """Requests queued behind each other for the lock share the busy timeout, not one each: every submit is a
    503 within about the timeout, so a client retrying at twice it does not make a duplicate job."""
    data_dir = tmp_path / "state"
    key = create_key(data_dir, "locked", "--rate-limit", "0")
    timeout, submits = 2.0, 5
    live = LiveServer(data_dir, env={"DIARIST_DATABASE_BUSY_TIMEOUT_SECONDS": str(timeout)}, workers=0).start()
    try:
        with live.client(key) as api:
            media = upload(api, SAMPLE, "s.wav")

            def submit() -> tuple[int, float]:
                start = time.monotonic()
                answer = api.post("/v1/diarize", json={"url": media})
                return answer.status_code, time.monotonic() - start

            with held_lock(data_dir / "diarist.db"), ThreadPoolExecutor(submits) as pool:
                answers = list(pool.map(lambda _: submit(), range(submits)))
            assert [status for status, _ in answers] == [503] * submits, answers
            assert max(seconds for _, seconds in answers) < timeout + 1.5, answers  # unfixed: 2, 4, 6, 8, 10 s
            assert api.get("/v2/jobs").json()["items"] == []
    finally:
        live.stop()


@pytest.mark.slow
def test_a_workers_job_end_waits_for_the_database_instead_of_being_lost(tmp_path):
    from diarist.jobs.worker import WorkerStore

    db = tmp_path / "jobs.db"
    setup = Store(f"sqlite:///{db}")
    setup.migrate()
    key = setup.create_key("k", quota_hours=1).record
    setup.create_job("j", key.id, "diarize", {"url": "media://a"}, status=PENDING, reserve_seconds=30.0)
    setup.claim_job("w")
    store = WorkerStore(f"sqlite:///{db}", busy_timeout=0.2, stop=threading.Event())
    ended = []
    with held_lock(db):
        assert store.report_progress("j", 1, 10)  # skipped: the job goes on
        finisher = threading.Thread(
            target=lambda: ended.append(store.finish_job("j", 1, SUCCEEDED, {"diarization": []}, audio_seconds=29.5))
        )
        finisher.start()
        time.sleep(2)  # a few failed attempts
        assert finisher.is_alive() and not ended
    finisher.join(60)
    assert ended[0].status == SUCCEEDED
    assert setup.get_job("j").output == {"diarization": []}
    record = setup.get_key(key.id)
    assert (record.used_seconds, record.reserved_seconds) == (29.5, 0.0)


def test_health_is_public_and_lists_its_checks(server):
    answer = httpx.get(f"{server.url}/health")
    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == "ok"
    assert all(check["ok"] for check in body["checks"].values())
    if server.fleet:  # no local workers (`diarist worker` processes elsewhere); rate limits in the broker's Redis
        assert set(body["checks"]) == {"database", "reaper", "webhooks", "retention", "liveReaper", "rateLimits"}
    else:
        checks = {"database", "workers", "reaper", "webhooks", "retention", "liveReaper", "walCheckpoint"}
        assert set(body["checks"]) == checks
        assert body["checks"]["workers"]["workers"] == 1


# --- 2. the audio quota is reserved at submit --------------------------------------------------


def test_concurrent_submits_never_overrun_the_quota(server):
    key = create_key(server.data_dir, "reserve", "--rate-limit", "0", "--quota-hours", "0.03")  # 108 s
    with server.client(key) as api:
        media = upload(api, SAMPLE, "sample.wav")
        start = threading.Barrier(8)
        answers = []

        def submit() -> None:
            start.wait()
            answers.append(api.post("/v1/diarize", json={"url": media, "model": "community-1"}))

        threads = [threading.Thread(target=submit) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        accepted = [a.json()["jobId"] for a in answers if a.status_code == 200]
        refused = [a for a in answers if a.status_code != 200]
        assert len(accepted) == 3  # floor(108 / 30)
        assert {a.status_code for a in refused} == {402}
        assert "cannot take this audio's 30.0 s" in refused[0].json()["message"]
        # Canceling a job gives its reservation back (the newest is still pending behind the others).
        newest = api.get("/v2/jobs", params={"limit": 1}).json()["items"][0]["id"]
        assert api.delete(f"/v1/jobs/{newest}").status_code == 200
        again = api.post("/v1/diarize", json={"url": media, "model": "community-1"})
        assert again.status_code == 200
        assert api.post("/v1/diarize", json={"url": media}).status_code == 402
        for job_id in [*accepted, again.json()["jobId"]]:
            api.delete(f"/v1/jobs/{job_id}")


def test_url_input_is_held_on_the_quota_once_downloaded(server, peer):
    key = create_key(server.data_dir, "url-quota", "--rate-limit", "0", "--quota-hours", "0.005")  # 18 s
    peer.files["/talk.wav"] = SAMPLE.read_bytes()
    with server.client(key) as api:
        job = api.post("/v1/diarize", json={"url": f"{peer.url}/talk.wav", "model": "community-1"})
        assert job.status_code == 200  # the length of a URL is unknown at submit
        failed = wait_for(api, job.json()["jobId"])
    assert failed["status"] == "failed"
    assert "quota of 0.005 hours" in failed["output"]["error"]
    assert "30.0 s" in failed["output"]["error"]


@pytest.mark.slow
def test_uploads_that_hide_their_length_cannot_overrun_the_quota(server, sample_audio):
    # A FLAC written to a pipe announces no length; a concat script makes ffmpeg read other files.
    key = create_key(server.data_dir, "hidden-length", "--rate-limit", "0", "--quota-hours", "0.012")  # 43.2 s
    with server.client(key) as api:
        piped = upload(api, piped_flac(sample_audio), "piped.flac")
        jobs = [api.post("/v1/diarize", json={"url": piped, "model": "community-1"}) for _ in range(2)]
        assert [job.status_code for job in jobs] == [200, 200]  # nothing to hold at submit
        ended = [wait_for(api, job.json()["jobId"]) for job in jobs]
        assert [job["status"] for job in ended] == ["succeeded", "failed"]
        assert "quota of 0.012 hours" in ended[1]["output"]["error"]
        upload(api, SAMPLE, "s.wav")
        script = "ffconcat version 1.0\n" + "".join(f"file {sha256(b's.wav').hexdigest()}\n" for _ in range(20))
        playlist = upload(api, script.encode(), "list.txt")
        refused = wait_for(api, api.post("/v1/diarize", json={"url": playlist}).json()["jobId"])
        assert refused["status"] == "failed" and "not audio that can be decoded" in refused["output"]["error"]
    used = next(line for line in run_cli("keys", "list", data_dir=server.data_dir).splitlines() if key.id in line)
    assert used.split()[4] == "0.01"  # 30 s of the one job that ran, in hours


def test_reservations_settle_on_success_and_release_on_failure_cancel_and_give_up(database_url):
    from diarist.jobs.store import QuotaExceededError

    store = Store(database_url)
    store.migrate()
    key = store.create_key("k", quota_hours=120 / 3600).record
    for name in ("ok", "bad", "gone", "dies"):
        store.create_job(name, key.id, "diarize", {"url": "media://a"}, status=PENDING, reserve_seconds=30.0)
    assert store.get_key(key.id).reserved_seconds == 120.0
    with pytest.raises(QuotaExceededError, match="used up"):  # a URL job needs some room left
        store.create_job("more", key.id, "diarize", {"url": "https://example.com/a"}, status=PENDING)
    assert store.claim_job("w").id == "ok"
    store.finish_job("ok", 1, SUCCEEDED, {"diarization": []}, audio_seconds=29.0)
    assert store.claim_job("w").id == "bad"
    store.finish_job("bad", 1, FAILED, {"error": "x"})
    store.cancel_job("gone", key.id)
    assert store.claim_job("w").id == "dies"
    store.requeue_jobs("w", max_attempts=1)  # gave up: failed
    record = store.get_key(key.id)
    assert (record.used_seconds, record.reserved_seconds) == (29.0, 0.0)
    store.create_job("fits", key.id, "diarize", {"url": "media://a"}, status=PENDING, reserve_seconds=71.0)
    with pytest.raises(QuotaExceededError, match=r"cannot take this audio's 20\.5 s"):
        store.create_job("over", key.id, "diarize", {"url": "media://a"}, status=PENDING, reserve_seconds=20.5)
    assert store.get_job("over") is None


# --- 3. the data dir is private ---------------------------------------------------------------


@pytest.mark.slow
def test_everything_the_server_writes_is_private_under_umask_022(umask_022_server, peer):
    server, key = umask_022_server
    peer.files["/talk.wav"] = SAMPLE.read_bytes()
    with server.client(key) as api:
        media = upload(api, SAMPLE, "private.wav")
        for url in (media, f"{peer.url}/talk.wav"):  # an upload and a download
            job_id = api.post("/v1/diarize", json={"url": url, "model": "community-1"}).json()["jobId"]
            assert wait_for(api, job_id)["status"] == "succeeded"
    data_dir = server.data_dir
    assert (data_dir / "media").is_dir() and (data_dir / "downloads").is_dir()
    assert {p.name for p in data_dir.iterdir()} >= {"diarist.db", "diarist.db-wal", "server.lock"}
    for path in [data_dir, *data_dir.rglob("*")]:
        if path.name == "server.log":  # the test harness made it, under umask 022
            continue
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), f"{path}: {oct(mode)}"
    assert f"can be accessed by other users (e.g. {data_dir / 'server.log'})" in server.log()


# --- 4. pre-signed URLs need a live key and stay inside the media folder -------------------------


def test_upload_url_dies_with_its_key(server):
    key = create_key(server.data_dir, "revoked", "--rate-limit", "0")
    with server.client(key) as api:
        media = upload(api, b"kept", "a.bin")
        put_url = api.post("/v1/media/input", json={"url": "media://b.bin"}).json()["url"]
        get_url = api.post("/v1/media/output", json={"url": media}).json()["url"]
    run_cli("keys", "revoke", key.id, data_dir=server.data_dir)
    refused = httpx.put(put_url, content=b"after revoke")
    assert refused.status_code == 403 and "revoked" in refused.json()["message"]
    assert httpx.get(get_url).status_code == 403


@pytest.mark.parametrize(
    "key_id, name",
    [
        ("../../escaped", "x"),
        ("ABSOLUTE", "x"),
        ("abc/../..", "x"),
        ("0123456789ab", "x"),  # well formed, but no such key
        ("KEY", "x\n"),
        ("KEY", "a b"),
        ("KEY", 7),
        (["KEY"], "x"),
    ],
)
def test_crafted_tokens_signed_with_the_real_secret_are_refused(server, key, tmp_path, key_id, name):
    secret = Store(server.database).signing_secret("unused").encode()
    if key_id == "KEY":
        key_id = key.id
    elif key_id == "ABSOLUTE":
        key_id = str(tmp_path / "escaped")
    token = make_token(secret, "put", key_id, name, 60)
    before = set(server.data_dir.parent.rglob("*"))
    answer = httpx.put(f"{server.url}/v1/media/upload/{token}", content=b"payload")
    assert answer.status_code == 403, answer.text
    assert set(answer.json()) == {"requestId", "message"}
    assert set(server.data_dir.parent.rglob("*")) <= before | {server.data_dir / "server.log"}
    assert not (tmp_path / "escaped").exists()


@pytest.mark.parametrize("token", ["x.%C3%A9", "%C3%A9", "abc", "a.b.c", "e30.", "e30.AAAA"])
def test_malformed_tokens_are_403(server, token):
    for answer in (
        httpx.put(f"{server.url}/v1/media/upload/{token}", content=b"x"),
        httpx.get(f"{server.url}/v1/media/download/{token}"),
    ):
        assert answer.status_code == 403, answer.text
        assert "invalid" in answer.json()["message"]


def test_media_url_with_a_final_newline_is_refused(api):
    for path in ("/v1/media/input", "/v1/diarize"):
        answer = api.post(path, json={"url": "media://abc\n"})
        assert answer.status_code == 400
        assert answer.json()["errors"][0]["field"] == "url"


# --- 6. half-written uploads and the storage quota ----------------------------------------------


def test_retention_deletes_half_written_uploads_left_by_a_crash(tmp_path, database_url):
    store = Store(database_url)
    store.migrate()
    media = MediaStore(tmp_path / "media")
    stale = media.partial_path("abc123", "a.wav")
    fresh = media.partial_path("abc123", "b.wav")
    stale.write_bytes(b"half")
    fresh.write_bytes(b"writing")
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    day = timedelta(days=1)
    expire(store, media, tmp_path / "downloads", result_ttl=day, media_ttl=day, part_ttl=timedelta(hours=1))
    assert not stale.exists() and fresh.exists()


def test_storage_quota_per_key(server):
    key = create_key(server.data_dir, "storage", "--rate-limit", "0", "--storage-quota-gb", str(100_000 / 1024**3))
    with server.client(key) as api:
        upload(api, b"a" * 60_000, "first.bin")
        put_url = api.post("/v1/media/input", json={"url": "media://second.bin"}).json()["url"]
        over = httpx.put(put_url, content=b"b" * 60_000)
        assert over.status_code == 413
        assert "over its storage quota of 100000 bytes" in over.json()["message"]
        streamed = httpx.put(put_url, content=iter([b"b" * 30_000, b"b" * 30_000]))  # no Content-Length
        assert streamed.status_code == 413
        assert not list((server.data_dir / "media" / key.id).glob("*.part"))
        upload(api, b"c" * 90_000, "first.bin")  # replacing a file counts only the new one
        assert api.post("/v1/media/output", json={"url": "media://second.bin"}).status_code == 404


def _start_put(url: str, length: int, first: bytes) -> socket.socket:
    """A PUT of `length` bytes whose body has only begun to arrive."""
    target = httpx.URL(url)
    connection = socket.create_connection((target.host, target.port), timeout=10)
    head = f"PUT {target.raw_path.decode()} HTTP/1.1\r\nHost: {target.host}\r\nContent-Length: {length}\r\n\r\n"
    connection.sendall(head.encode() + first)
    return connection


def _status(connection: socket.socket) -> int:
    answer = connection.recv(65536).decode(errors="replace")
    connection.close()
    return int(answer.split()[1])


def test_uploads_still_arriving_count_against_the_storage_quota(server):
    # Parallel uploads, each within the quota alone, must not fill the disk with partial files.
    key = create_key(server.data_dir, "in-flight", "--rate-limit", "0", "--storage-quota-gb", str(100_000 / 1024**3))
    with server.client(key) as api:
        urls = [api.post("/v1/media/input", json={"url": f"media://{n}.bin"}).json()["url"] for n in "ab"]
    first = _start_put(urls[0], 60_000, b"a" * 50_000)
    time.sleep(0.5)  # the server has taken in the first 50 kB
    second = _start_put(urls[1], 60_000, b"b" * 60_000)
    assert _status(second) == 413  # 50 kB arriving + 60 kB > 100 kB
    first.sendall(b"a" * 10_000)
    assert _status(first) == 200
    assert not list((server.data_dir / "media" / key.id).glob("*.part"))


# --- 5. a full disk is a 507, not a 500 ----------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    """A 48 MiB tmpfs, unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(disk: Path) -> Path:
    """Write a file until the disk has no byte left."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as f:
        for block in (1024**2, 4096, 1):
            try:
                while True:
                    f.write(b"\0" * block)
            except OSError:
                continue
    return filler


@pytest.mark.slow
def test_full_disk_is_507_and_leaves_nothing_behind(small_disk):
    data_dir = small_disk / "state"
    key = create_key(data_dir, "full", "--rate-limit", "0")
    server = LiveServer(data_dir).start()
    try:
        with server.client(key) as api:
            media = upload(api, SAMPLE, "sample.wav")
            put_url = api.post("/v1/media/input", json={"url": "media://more.wav"}).json()["url"]
            filler = fill(small_disk)
            full = httpx.put(put_url, content=b"\1" * 300_000)
            assert full.status_code == 507, full.text
            assert set(full.json()) == {"requestId", "message"} and "disk is full" in full.json()["message"]
            assert not list((data_dir / "media").rglob("*.part"))
            submit = api.post("/v1/diarize", json={"url": media, "model": "community-1"})
            assert submit.status_code == 507, submit.text
            assert "disk is full" in submit.json()["message"]
            filler.unlink()
            assert httpx.put(put_url, content=b"\1" * 300_000).status_code == 200
            job_id = api.post("/v1/diarize", json={"url": media, "model": "community-1"}).json()["jobId"]
            assert wait_for(api, job_id)["status"] == "succeeded"
    finally:
        server.stop()


@pytest.mark.slow
def test_download_onto_a_full_disk_fails_its_job_in_the_users_terms(tmp_path, peer):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    data_dir = tmp_path / "state"
    downloads = data_dir / "downloads"
    downloads.mkdir(parents=True)
    # The database has room; only the downloads folder is too small for the 940 kB sample.
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(downloads)], check=True)
    try:
        key = create_key(data_dir, "downloads", "--rate-limit", "0")
        server = LiveServer(data_dir).start()
        peer.files["/talk.wav"] = SAMPLE.read_bytes()
        try:
            with server.client(key) as api:
                job_id = api.post("/v1/diarize", json={"url": f"{peer.url}/talk.wav"}).json()["jobId"]
                job = wait_for(api, job_id)
                # Room again: the next job runs.
                subprocess.run(["mount", "-o", "remount,size=4m", str(downloads)], check=True)
                again = api.post("/v1/diarize", json={"url": f"{peer.url}/talk.wav", "model": "community-1"})
                assert wait_for(api, again.json()["jobId"])["status"] == "succeeded"
        finally:
            server.stop()
        assert job["status"] == "failed"
        assert job["output"]["error"] == (
            f"Could not load audio from {peer.url}/talk.wav: the server's disk is full; try again later."
        )
        assert not list(downloads.iterdir())
    finally:
        subprocess.run(["umount", "-l", str(downloads)], check=True)
