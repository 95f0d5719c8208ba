"""Audio URLs through the live server: a cancel frees a worker stuck in a slow download, and credentials in a
URL never show in a job's error."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from .live import PEER_HOST, wait_for

SECRET = "TopSecretPw"


class Trickler:
    """An HTTP server on PEER_HOST that sends headers and then one byte a second: a download that never ends.

    It stops on its own after `max_bytes`, so even a worker that never gives up is freed in the end.
    """

    def __init__(self, max_bytes: int = 120) -> None:
        self.sent = 0
        self.closed_by_client = threading.Event()
        self.stop = threading.Event()
        trickler = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(10**6))
                self.end_headers()
                try:
                    for _ in range(max_bytes):
                        self.wfile.write(b"x")
                        self.wfile.flush()
                        trickler.sent += 1
                        if trickler.stop.wait(1):
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
