"""A real `diarist serve` in a subprocess, and small real HTTP servers for webhooks and audio URLs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from diarist.jobs.tables import TERMINAL

# Test servers listen here; the service may reach this address (DIARIST_ALLOWED_HOSTS) but not
# 127.0.0.1, so SSRF refusals of the usual loopback address stay testable.
PEER_HOST = "127.0.0.2"
# Debian's chromium for the browser tests and the render bench, and the flags it needs here: headless
# as root, and none of its background connections (this machine's network refuses them).
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(*args: str, data_dir: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "diarist", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@dataclass
class Key:
    key: str
    webhook_secret: str

    @property
    def id(self) -> str:
        return self.key.split("_")[1]


def create_key(data_dir: Path, name: str, *options: str) -> Key:
    lines = run_cli("keys", "create", "--name", name, *options, data_dir=data_dir).splitlines()
    return Key(lines[0].split()[-1], lines[1].split()[-1])


@dataclass(frozen=True)
class Fleet:
    """The services of the celery executor: a PostgreSQL database and a broker, with short leases."""

    database_url: str
    broker_url: str
    lease_seconds: float = 3.0
    heartbeat_seconds: float = 1.0
    republish_seconds: float = 10.0
    reaper_interval_seconds: float = 1.0
    max_running_jobs_per_key: int = 0

    def write_config(self, data_dir: Path) -> None:
        """`diarist.toml` in the data dir, so that `diarist keys` there also reaches the database."""
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / "diarist.toml").write_text(
            f'executor = "celery"\ndatabase_url = "{self.database_url}"\nbroker_url = "{self.broker_url}"\n'
            f"lease_seconds = {self.lease_seconds}\nheartbeat_seconds = {self.heartbeat_seconds}\n"
            f"reaper_interval_seconds = {self.reaper_interval_seconds}\nrepublish_seconds = {self.republish_seconds}\n"
            f"max_running_jobs_per_key = {self.max_running_jobs_per_key}\n"
        )


@dataclass
class LiveServer:
    """`diarist serve` on a free port with its own data dir; with `fleet`, in celery mode (API only)."""

    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    workers: int = 1
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    fleet: Fleet | None = None
    worker: LiveWorker | None = None  # in celery mode, the worker that runs this server's jobs

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def jobs_data_dir(self) -> Path:
        """The data dir of the process that runs the jobs (downloads, media paths in its log)."""
        return self.worker.data_dir if self.worker else self.data_dir

    def jobs_log(self) -> str:
        """The log of the process that runs the jobs."""
        return self.worker.log() if self.worker else self.log()

    @property
    def database(self) -> str:
        """The URL of the server's job database."""
        return self.fleet.database_url if self.fleet else f"sqlite:///{self.data_dir / 'diarist.db'}"

    def start(self) -> LiveServer:
        env = {
            **os.environ,
            "DIARIST_ALLOWED_HOSTS": PEER_HOST,
            "DIARIST_THREADS_PER_WORKER": "2",
            **self.env,
        }
        command = [sys.executable, "-m", "diarist", "serve", "--data-dir", str(self.data_dir)]
        command += ["--port", str(self.port), "--workers", str(0 if self.fleet else self.workers)]
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.fleet is not None:
            self.fleet.write_config(self.data_dir)
        log = (self.data_dir / "server.log").open("ab")
        self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log()
            try:
                httpx.get(f"{self.url}/openapi.json", timeout=1)
                return self
            except httpx.TransportError:
                time.sleep(0.2)
        raise AssertionError(f"server did not start:\n{self.log()}")

    def log(self) -> str:
        path = self.data_dir / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """kill -9: no shutdown code runs."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def client(self, key: Key | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key.key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


@dataclass
class LiveWorker:
    """`diarist worker` in its own process group, with its own data dir, serving `server`'s jobs.

    `fleet` replaces the server's service addresses (a worker on another host reaches them elsewhere)
    and `prefix` runs the command through another one (e.g. `ip netns exec NAME`). The worker shares
    no disk with the server: it fetches uploads from the replica that holds them.
    """

    server: LiveServer
    data_dir: Path
    name: str
    env: dict[str, str] = field(default_factory=dict)
    queues: str = "diarization,transcription"
    process: subprocess.Popen | None = None
    fleet: Fleet | None = None
    prefix: tuple[str, ...] = ()

    def start(self) -> LiveWorker:
        fleet = self.fleet or self.server.fleet
        assert fleet is not None
        fleet.write_config(self.data_dir)
        env = {**os.environ, "DIARIST_ALLOWED_HOSTS": PEER_HOST, "DIARIST_THREADS_PER_WORKER": "2", **self.env}
        command = [*self.prefix, sys.executable, "-m", "diarist", "worker", "--data-dir", str(self.data_dir)]
        command += ["--concurrency", "1", "--queues", self.queues, "--name", self.name]
        earlier = self.log().count("ready: queues")  # a revived worker appends to its predecessor's log
        log = (self.data_dir / "worker.log").open("ab")
        self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while self.log().count("ready: queues") <= earlier:
            assert self.process.poll() is None, self.log()
            assert time.monotonic() < deadline, f"worker did not start:\n{self.log()}"
            time.sleep(0.2)
        return self

    def log(self) -> str:
        path = self.data_dir / "worker.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def signal(self, number: int) -> None:
        """Send `number` to the whole worker (its main process and its pool's children)."""
        assert self.process is not None
        os.killpg(self.process.pid, number)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.signal(signal.SIGCONT)  # a stopped worker cannot take SIGTERM
        self.signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.process.wait()

    def kill(self) -> None:
        """kill -9 of the main process and its children, as when the machine goes away."""
        self.signal(signal.SIGKILL)
        self.process.wait()


def upload(client: httpx.Client, path: Path | bytes, name: str) -> str:
    """Upload through the media API, as the official SDK does; returns the media:// URL."""
    media_url = f"media://{name}"
    target = client.post("/v1/media/input", json={"url": media_url})
    assert target.status_code == 201, target.text
    data = path if isinstance(path, bytes) else path.read_bytes()
    put = httpx.put(target.json()["url"], content=data, timeout=60)
    assert put.status_code == 200, put.text
    return media_url


def submit(client: httpx.Client, path: str, **body) -> str:
    """POST a job request (`/v1/diarize`, `/v1/voiceprint`, `/v1/identify`); its jobId, checking it was created."""
    created = client.post(path, json=body)
    assert created.status_code == 200, created.text
    assert created.json()["status"] == "created"
    return created.json()["jobId"]


def error_fields(response: httpx.Response) -> dict[str, str]:
    """field -> message of a 400 in the API's validation error shape."""
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["message"] == "Invalid request"
    return {e["field"]: e["message"] for e in body["errors"]}


def wait_for(client: httpx.Client, job_id: str, statuses: tuple[str, ...] = TERMINAL, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = client.get(f"/v1/jobs/{job_id}")
        if answer.status_code == 429:  # a polite client waits as told, as the SDK does
            time.sleep(float(answer.headers["Retry-After"]))
            continue
        assert answer.status_code == 200, answer.text
        job = answer.json()
        if job["status"] in statuses:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still {job['status']} after {timeout} s")


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    method: str = "POST"

    def json(self) -> dict:
        return json.loads(self.body)


class Peer:
    """A real HTTP server on PEER_HOST: records POSTs (webhooks) and GETs, serves files (audio URLs).

    `answers` is the queue of status codes for the next POSTs (then 200); `files` maps a path
    to the bytes GET returns (404 otherwise); `redirects` maps a path to the (status, Location)
    that any method gets there; `post_delay` is how long a POST waits before its answer.
    """

    def __init__(self, host: str = PEER_HOST) -> None:
        self.received: list[Received] = []
        self.answers: list[int] = []
        self.files: dict[str, bytes] = {}
        self.redirects: dict[str, tuple[int, str]] = {}
        self.post_delay = 0.0
        self.got_request = threading.Event()
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def _redirected(self) -> bool:
                if self.path not in peer.redirects:
                    return False
                status, location = peer.redirects[self.path]
                self.send_response(status)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return True

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                peer.received.append(Received(self.path, dict(self.headers), body))
                peer.got_request.set()
                time.sleep(peer.post_delay)
                if self._redirected():
                    return
                self.send_response(peer.answers.pop(0) if peer.answers else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:
                peer.received.append(Received(self.path, dict(self.headers), b"", "GET"))
                if self._redirected():
                    return
                data = peer.files.get(self.path)
                self.send_response(200 if data is not None else 404)
                self.send_header("Content-Length", str(len(data or b"")))
                self.end_headers()
                self.wfile.write(data or b"")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, count: int, timeout: float = 30) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.received) >= count, f"got {len(self.received)} requests, expected {count}"
        return self.received

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
