"""Audio URLs through the live server: a cancel frees a worker stuck in a slow download, a download slower than
`fetch_min_rate` fails, one key's slow downloads cannot take every worker, and credentials in a URL never show
in a job's error."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from diarist.net import FetchError, NetPolicy, download

from .conftest import SAMPLE
from .live import PEER_HOST, LiveServer, create_key, upload, wait_for

SECRET = "TopSecretPw"


class Trickler:
    """An HTTP server on PEER_HOST that sends headers and then `chunk` bytes every `interval` seconds: a
    download that never ends.

    It stops on its own after `max_bytes` chunks, so even a worker that never gives up is freed in the end.
    """

    def __init__(self, max_bytes: int = 120, chunk: int = 1, interval: float = 1.0) -> None:
        self.sent = 0
        self.closed_by_client = threading.Event()
        self.stop = threading.Event()
        trickler = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(max_bytes * chunk + 1))  # one byte more than it sends
                self.end_headers()
                try:
                    for _ in range(max_bytes):
                        self.wfile.write(b"x" * chunk)
                        self.wfile.flush()
                        trickler.sent += chunk
                        if trickler.stop.wait(interval):
                            return
                except (BrokenPipeError, ConnectionResetError):
                    trickler.closed_by_client.set()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((PEER_HOST, 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://{PEER_HOST}:{self.server.server_address[1]}/slow.wav"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def trickler() -> Iterator[Trickler]:
    server = Trickler()
    yield server
    server.close()


@pytest.mark.slow
def test_cancel_frees_the_worker_from_a_trickling_download(server, api, trickler, sample_media):
    job_id = api.post("/v1/diarize", json={"url": trickler.url}).json()["jobId"]
    wait_for(api, job_id, statuses=("running",), timeout=60)
    deadline = time.monotonic() + 30
    while trickler.sent < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert trickler.sent >= 3  # the worker is inside the download
    assert api.delete(f"/v1/jobs/{job_id}").json()["status"] == "canceled"

    # The session server has one worker: this job runs only once the download was given up.
    next_id = api.post("/v1/diarize", json={"url": sample_media, "model": "community-1"}).json()["jobId"]
    assert wait_for(api, next_id, timeout=90)["status"] == "succeeded"
    assert trickler.closed_by_client.wait(10)
    assert [p.name for p in (server.jobs_data_dir / "downloads").iterdir() if job_id in p.name] == []


def test_failed_url_job_error_hides_the_urls_credentials(api, peer):
    port = peer.url.rsplit(":", 1)[1]
    url = f"http://user:{SECRET}@{PEER_HOST}:{port}/missing.wav"  # the peer answers 404
    job = wait_for(api, api.post("/v1/diarize", json={"url": url}).json()["jobId"], timeout=60)
    assert job["status"] == "failed"
    assert job["output"]["error"] == (
        f"Could not load audio from http://***@{PEER_HOST}:{port}/missing.wav: HTTP 404 from {PEER_HOST}."
    )


def test_a_download_slower_than_the_minimum_rate_fails_within_a_window(tmp_path):
    trickler = Trickler(max_bytes=60, interval=0.5)  # 2 bytes/s for half a minute
    try:
        policy = NetPolicy(allowed_hosts=(PEER_HOST,), min_rate=1024, rate_window=2.0)
        started = time.monotonic()
        with pytest.raises(FetchError, match="the download was slower than 1024 bytes/s"):
            download(trickler.url, tmp_path / "slow.wav", policy, 10**9)
        assert time.monotonic() - started < 5
        assert list(tmp_path.iterdir()) == []
    finally:
        trickler.close()
    fast = Trickler(max_bytes=6, chunk=4096, interval=0.5)  # 8 KiB/s, and the body ends early: not for slowness
    try:
        with pytest.raises(FetchError, match="sent an invalid HTTP response"):
            download(fast.url, tmp_path / "fast.wav", policy, 10**9)
    finally:
        fast.close()


@pytest.mark.slow
def test_a_trickling_url_fails_at_the_minimum_rate_and_frees_the_worker_for_another_key(server, api, trickler):
    """One byte a second (the Trickler) against the default 8 KiB/s over 30 s: it fails in about
    half a minute instead of holding the session server's only worker for the hour of fetch_total_timeout."""
    started = time.monotonic()
    slow = api.post("/v1/diarize", json={"url": trickler.url}).json()["jobId"]
    other = create_key(server.data_dir, "other tenant", "--rate-limit", "0")
    with server.client(other) as tenant:
        waiting = tenant.post("/v1/diarize", json={"url": upload(tenant, SAMPLE, "other.wav")}).json()["jobId"]
        failed = wait_for(api, slow, timeout=90)
        assert failed["status"] == "failed"
        assert failed["output"]["error"] == (
            f"Could not load audio from {trickler.url}: the download was slower than 8192 bytes/s."
        )
        assert time.monotonic() - started < 75
        assert wait_for(tenant, waiting, timeout=120)["status"] == "succeeded"


@pytest.fixture
def two_workers(tmp_path) -> Iterator[LiveServer]:
    """The embedded default with two local workers, one job of a key at once."""
    live = LiveServer(tmp_path / "two", workers=2, env={"DIARIST_MAX_RUNNING_JOBS_PER_KEY": "1"}).start()
    yield live
    live.stop()


@pytest.mark.slow
def test_one_keys_slow_downloads_leave_a_local_worker_to_other_keys(two_workers):
    slow = Trickler(max_bytes=120, chunk=16 * 1024)  # 16 KiB/s: above the minimum rate, but it never ends
    try:
        assert_one_key_cannot_fill_every_worker(two_workers, slow)
    finally:
        slow.close()


def assert_one_key_cannot_fill_every_worker(server: LiveServer, slow: Trickler) -> None:
    """Key A's two never-ending downloads take one worker, not both; key B's job runs on the other
    and succeeds, while A's second waits, pending; it runs once A's first ends (canceled here)."""
    greedy = create_key(server.data_dir, "greedy", "--rate-limit", "0")
    other = create_key(server.data_dir, "other", "--rate-limit", "0")
    with server.client(greedy) as a, server.client(other) as b:
        first = a.post("/v1/diarize", json={"url": slow.url}).json()["jobId"]
        wait_for(a, first, statuses=("running",), timeout=60)
        second = a.post("/v1/diarize", json={"url": slow.url}).json()["jobId"]
        job = b.post("/v1/diarize", json={"url": upload(b, SAMPLE, "b.wav")}).json()["jobId"]
        assert wait_for(b, job, timeout=150)["status"] == "succeeded"
        assert a.get(f"/v1/jobs/{second}").json()["status"] == "pending"  # not failed: waiting its turn
        assert a.delete(f"/v1/jobs/{first}").json()["status"] == "canceled"
        wait_for(a, second, statuses=("running",), timeout=60)
        assert a.delete(f"/v1/jobs/{second}").json()["status"] == "canceled"
