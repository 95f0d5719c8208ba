"""Load test of the HTTP service: request latency while the workers are busy, then a burst of jobs.

    cd bench && ../.venv/bin/python api_load.py [--workers 1] [--clients 100] [--pace 1] [--json out.json]

It starts its own `diarist serve` on a free loopback port with a fresh data dir (removed at the end),
creates API keys without a rate limit, uploads the 30 s dev sample and a short clip cut from it
through the media API, and measures:

1. Latency under load. A few jobs on the 30 s sample keep the worker(s) busy first (a job must be
   `running` throughout; the script samples the database to check). Then `--clients` concurrent
   clients (one event loop, one keep-alive connection each; `--client lean`, the default: HTTP/1.1
   written by hand on uvloop; `--client httpx`: an httpx.AsyncClient each on asyncio's loop, as
   before) loop for `--duration` seconds: POST /v1/diarize on the short clip, then GET /v1/jobs/{id}
   of that job. Per endpoint: count, req/s, p50/p90/p99/max in ms from when the request's first byte
   is written, non-2xx, the p99 from the call instead (with the client's own wait before sending,
   its event loop busy with the other clients), and the server's own p50/p99 from its
   `Server-Timing` header. Target: p99 <= 20 ms. With `--pace S` (default 1)
   each client waits 0.5-1.5 x S seconds after each request, as a client polling its job does;
   `--pace 0` is a closed loop with no think time, which measures saturation: latency is then
   ~= clients / throughput (Little's law).
   The jobs left over (thousands) are then canceled with DELETE /v1/jobs/{id}, so that the burst
   measures only itself.
2. Burst. `--burst` jobs on the short clip are submitted at once under a second key, whose
   GET /v2/jobs listing (paginated, 100 a page) is polled until all are terminal or `--burst-timeout`.
   Reports succeeded / failed / lost (missing from the listing or never terminal), jobs run more than
   once (`attempts` > 1 in the SQLite database) and duplicates, wall time and jobs per minute.

Everything runs on one machine: the load generator, the API server and the workers share its CPUs,
and the summary shows how much CPU each used during the latency phase.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import wave
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import uvloop

SAMPLE = Path(__file__).resolve().parent / "data" / "dev" / "pyannote-sample.wav"
TERMINAL = ("succeeded", "failed", "canceled")
MODEL = "community-1"
TARGET_P99_MS = 20.0
T = TypeVar("T")
SSL_CONTEXT = ssl.create_default_context()  # httpx builds one per client otherwise (slow); unused over http


def log(message: str) -> None:
    """Progress goes to stderr; stdout holds only the summary."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- machine and processes -----------------------------------------------------------------------


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def machine_busy_seconds() -> float:
    """CPU time (all cores, all processes) the machine spent busy since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def busy_percent(seconds: float) -> float:
    """How busy the machine is (before we start anything), in % of one core, over `seconds`."""
    start, at = machine_busy_seconds(), time.perf_counter()
    time.sleep(seconds)
    return round(100 * (machine_busy_seconds() - start) / (time.perf_counter() - at), 1)


@dataclass
class CpuSnapshot:
    """CPU seconds used so far by this script, the API server, its worker processes and the machine."""

    at: float
    bench: float
    server: float
    workers: float
    machine: float

    @classmethod
    def take(cls, server_pid: int) -> CpuSnapshot:
        times = os.times()
        workers = 0.0
        for pid in descendants(server_pid):
            with contextlib.suppress(OSError):
                workers += cpu_seconds(pid)
        bench = times.user + times.system
        return cls(time.perf_counter(), bench, cpu_seconds(server_pid), workers, machine_busy_seconds())

    def percent_since(self, start: CpuSnapshot) -> dict[str, float]:
        """CPU use in % of one core (the machine has cpu_count * 100 %); `others`: processes not ours."""
        wall = self.at - start.at
        used = {name: 100 * (getattr(self, name) - getattr(start, name)) / wall for name in self.__annotations__}
        del used["at"]
        used["others"] = max(0.0, used["machine"] - used["bench"] - used["server"] - used["workers"])
        return {name: round(value, 1) for name, value in used.items()}


def wait_workers_idle(server_pid: int, timeout: float, window: float = 0.5, idle_share: float = 0.1) -> float:
    """Wait until the worker processes use under `idle_share` of a core; the seconds it took."""
    start = time.perf_counter()
    before = CpuSnapshot.take(server_pid)
    while time.perf_counter() - start < timeout:
        time.sleep(window)
        now = CpuSnapshot.take(server_pid)
        if now.workers - before.workers < idle_share * (now.at - before.at):
            break
        before = now
    return time.perf_counter() - start


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def create_key(data_dir: Path, name: str) -> str:
    command = [sys.executable, "-m", "diarist", "keys", "create", "--name", name, "--rate-limit", "0"]
    out = subprocess.run(
        [*command, "--data-dir", str(data_dir)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    match = re.search(r"api key:\s+(\S+)", out)
    if match is None:
        raise RuntimeError(f"unexpected output of keys create: {out!r}")
    return match.group(1)


@dataclass
class Server:
    process: subprocess.Popen
    base_url: str
    log_path: Path
    exit_code: int | None = None
    stop_note: str = ""

    @classmethod
    def start(cls, data_dir: Path, workers: int, threads: int | None) -> Server:
        port = free_port()
        env = dict(os.environ)
        if threads:
            env["DIARIST_THREADS_PER_WORKER"] = str(threads)
        log_path = data_dir / "server.log"
        command = [sys.executable, "-m", "diarist", "serve", "--data-dir", str(data_dir)]
        command += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
        with log_path.open("wb") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        return cls(process, f"http://127.0.0.1:{port}", log_path)

    def wait_ready(self, key: str, timeout: float = 120.0) -> float:
        start = time.perf_counter()
        while time.perf_counter() - start < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                r = httpx.get(f"{self.base_url}/v1/test", headers=auth(key), timeout=2)
                if r.status_code == 200:
                    return time.perf_counter() - start
            time.sleep(0.2)
        raise RuntimeError(f"the server did not answer /v1/test within {timeout:g} s:\n{self.log_tail()}")

    def stop(self, timeout: float = 30.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
                self.stop_note = "stopped on SIGINT"
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                self.stop_note = f"did not stop within {timeout:g} s of SIGINT: killed"
        self.exit_code = self.process.returncode

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


def server_log_report(path: Path) -> dict[str, Any]:
    """What the server logged: HTTP status codes of the access log, errors and warnings."""
    text = path.read_text(errors="replace") if path.exists() else ""
    statuses: Counter[str] = Counter()
    problems: list[str] = []
    for line in text.splitlines():
        access = re.search(r'"[A-Z]+ \S+ HTTP/[\d.]+" (\d{3})', line)
        if access:
            statuses[access.group(1)] += 1
        elif re.search(r"ERROR|WARNING|CRITICAL|Traceback|Exception|died", line):
            problems.append(line.strip())
    distinct = list(dict.fromkeys(re.sub(r"^\S+ \S+ ", "", p) for p in problems))
    return {
        "access_log_status_counts": dict(sorted(statuses.items())),
        "problem_lines": len(problems),
        "distinct_problems": distinct[:10],
    }


# --- audio and API helpers --------------------------------------------------------------------------


def cut_clip(source: Path, dest: Path, seconds: float) -> None:
    """The first `seconds` of a PCM WAV file, as a new WAV file."""
    with wave.open(str(source), "rb") as src:
        params = src.getparams()
        frames = src.readframes(int(seconds * params.framerate))
    with wave.open(str(dest), "wb") as out:
        out.setparams(params)
        out.writeframes(frames)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def upload(client: httpx.Client, path: Path, name: str) -> str:
    media_url = f"media://{name}"
    r = client.post("/v1/media/input", json={"url": media_url})
    r.raise_for_status()
    client.put(r.json()["url"], content=path.read_bytes(), headers={"Authorization": ""}).raise_for_status()
    return media_url


def submit(client: httpx.Client, media_url: str) -> str:
    r = client.post("/v1/diarize", json={"url": media_url, "model": MODEL})
    r.raise_for_status()
    return r.json()["jobId"]


def wait_job(client: httpx.Client, job_id: str, timeout: float = 300.0) -> dict[str, Any]:
    start = time.perf_counter()
    while True:
        job = client.get(f"/v1/jobs/{job_id}").raise_for_status().json()
        if job["status"] in TERMINAL or time.perf_counter() - start > timeout:
            return job
        time.sleep(0.1)


class RunningMonitor(threading.Thread):
    """Samples how many jobs are `running`, straight from the database (no load on the API)."""

    def __init__(self, db: Path, interval: float = 0.5):
        super().__init__(daemon=True)
        self.db, self.interval = db, interval
        self.samples: list[int] = []
        self._done = threading.Event()

    def run(self) -> None:
        connection = sqlite3.connect(self.db, timeout=5)
        try:
            while not self._done.wait(self.interval):
                with contextlib.suppress(sqlite3.Error):
                    self.samples.append(
                        connection.execute("SELECT COUNT(*) FROM jobs WHERE status = 'running'").fetchone()[0]
                    )
        finally:
            connection.close()

    def stop(self) -> None:
        self._done.set()
        self.join()


def running_jobs(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(db, timeout=5)) as connection:
        return connection.execute("SELECT COUNT(*) FROM jobs WHERE status = 'running'").fetchone()[0]


# --- latency ------------------------------------------------------------------------------------------


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return math.nan
    return sorted_values[min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))]


@dataclass
class Latencies:
    """Latencies in ms of one kind of request, with the answers that were not 2xx."""

    name: str
    ms: list[float] = field(default_factory=list)
    non_2xx: Counter[int] = field(default_factory=Counter)
    transport_errors: Counter[str] = field(default_factory=Counter)
    # From the call instead, the client's own wait before sending included (what this script measured before).
    from_call_ms: list[float] = field(default_factory=list)
    # The server's own time, from its `Server-Timing` header: arrival to the response's start.
    server_ms: list[float] = field(default_factory=list)

    def summary(self, seconds: float) -> dict[str, Any]:
        values = sorted(self.ms)
        return {
            "request": self.name,
            "count": len(values),
            "req_per_s": round(len(values) / seconds, 1) if seconds else math.nan,
            "p50_ms": round(percentile(values, 0.50), 1),
            "p90_ms": round(percentile(values, 0.90), 1),
            "p99_ms": round(percentile(values, 0.99), 1),
            "max_ms": round(values[-1], 1) if values else math.nan,
            "p99_from_call_ms": round(percentile(sorted(self.from_call_ms), 0.99), 1),
            "server_p50_ms": round(percentile(sorted(self.server_ms), 0.50), 1),
            "server_p99_ms": round(percentile(sorted(self.server_ms), 0.99), 1),
            "non_2xx": sum(self.non_2xx.values()),
            "non_2xx_by_status": {str(k): v for k, v in sorted(self.non_2xx.items())},
            "transport_errors": dict(self.transport_errors),
        }


@dataclass
class Answer:
    """An HTTP answer as the latency phase reads it."""

    status_code: int
    headers: dict[str, str]  # names in lower case
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class LeanClient:
    """One keep-alive HTTP/1.1 connection whose requests are written, and answers parsed, by hand.

    The load generator runs its 100 clients on one event loop. With httpx, each request cost that loop
    about 2.7 ms of CPU, and an answer that arrived while the loop was busy with others waited to be
    read: the bench counted the wait as the server's (up to ~10 ms at p99, against the server's own
    `Server-Timing`). This client costs the loop a fraction of that. It sends only what the latency
    phase needs (JSON or no body) and reads answers that have a Content-Length, as the API's have.
    """

    def __init__(self, base_url: str, key: str):
        host_port = base_url.split("://", 1)[1]
        self.host, port = host_port.rsplit(":", 1)
        self.port = int(port)
        self.head = f"Host: {host_port}\r\nAuthorization: Bearer {key}\r\n"
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def request(self, method: str, path: str, body: Any = None) -> tuple[Answer, float]:
        """The answer, and the time.perf_counter() when the request was written."""
        if self.streams is None:
            self.streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self.streams
        payload = b"" if body is None else json.dumps(body).encode()
        head = f"{method} {path} HTTP/1.1\r\n{self.head}"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        sent = time.perf_counter()
        writer.write(head.encode() + b"\r\n" + payload)
        try:
            lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            fields = (line.split(":", 1) for line in lines[1:] if ":" in line)
            headers = {name.strip().lower(): value.strip() for name, value in fields}
            answer = Answer(int(lines[0].split()[1]), headers, await reader.readexactly(int(headers["content-length"])))
        except BaseException:
            await self.aclose()
            raise
        if headers.get("connection", "").lower() == "close":
            await self.aclose()
        return answer, sent

    async def aclose(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None


class HttpxClient:
    """The same requests through httpx (what this bench used before LeanClient), for comparison."""

    def __init__(self, base_url: str, key: str, connections: int = 1):
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        self.client = httpx.AsyncClient(
            base_url=base_url, headers=auth(key), timeout=120, verify=SSL_CONTEXT, limits=limits
        )

    async def request(self, method: str, path: str, body: Any = None) -> tuple[Answer, float]:
        called = time.perf_counter()
        sent: list[float] = []

        async def trace(event: str, info: dict[str, Any]) -> None:
            if event == "http11.send_request_headers.started":
                sent.append(time.perf_counter())

        r = await self.client.request(method, path, json=body, extensions={"trace": trace})
        return Answer(r.status_code, dict(r.headers), r.content), sent[0] if sent else called

    async def aclose(self) -> None:
        await self.client.aclose()


CLIENTS = {"lean": LeanClient, "httpx": HttpxClient}


def run_loop(client_kind: str) -> Callable[[Coroutine[Any, Any, T]], T]:
    """How the latency phase runs its clients: the lean ones on uvloop (as the server runs), httpx on asyncio's
    own loop (as this bench did before)."""
    return uvloop.run if client_kind == "lean" else asyncio.run


async def timed(
    client: LeanClient | HttpxClient, record: Latencies, method: str, url: str, body: Any = None
) -> Answer | None:
    """One request, timed from when its first byte is written to the socket until its body is read.

    The load generator shares the machine and runs 100 clients on one event loop: between the call
    and the write, a request can wait for the loop behind other clients' responses. That wait is the
    client's, not the server's; `record.from_call_ms` keeps the times that include it.
    """
    called = time.perf_counter()
    try:
        r, sent = await client.request(method, url, body)
    except (httpx.HTTPError, OSError, asyncio.IncompleteReadError) as e:
        record.transport_errors[type(e).__name__] += 1
        await asyncio.sleep(0.05)  # a refused connection must not turn the client into a busy loop
        return None
    done = time.perf_counter()
    record.ms.append((done - sent) * 1000)
    record.from_call_ms.append((done - called) * 1000)
    name, _, server_ms = r.headers.get("server-timing", "").partition(";dur=")
    if name == "app":
        record.server_ms.append(float(server_ms))
    if not 200 <= r.status_code < 300:
        record.non_2xx[r.status_code] += 1
    return r


async def load_clients(
    client_kind: str, base_url: str, key: str, media_url: str, clients: int, duration: float, pace: float = 0.0
) -> tuple[Latencies, Latencies, list[str], float]:
    """`clients` clients (`client_kind`: lean or httpx) for `duration` s: POST /v1/diarize, then GET that
    job, and again.

    `pace` > 0: each client waits a random 0.5-1.5 x `pace` s after each request (a client polling
    its job); 0: closed loop with no think time, which measures saturation rather than latency.
    """
    rng = random.Random(0)

    async def think() -> None:
        if pace > 0:
            await asyncio.sleep(pace * rng.uniform(0.5, 1.5))

    posts, gets = Latencies("POST /v1/diarize"), Latencies("GET /v1/jobs/{id}")
    job_ids: list[str] = []
    body = {"url": media_url, "model": MODEL}
    sessions = [CLIENTS[client_kind](base_url, key) for _ in range(clients)]

    async def client_loop(client: LeanClient | HttpxClient, deadline: float) -> None:
        # Paced clients arrive spread over one interval, not all in the same millisecond.
        await asyncio.sleep(pace * rng.random())
        while time.perf_counter() < deadline:
            r = await timed(client, posts, "POST", "/v1/diarize", body)
            await think()
            if r is None or r.status_code != 200:
                continue
            job_id = r.json()["jobId"]
            job_ids.append(job_id)
            await timed(client, gets, "GET", f"/v1/jobs/{job_id}")
            await think()

    start = time.perf_counter()
    try:
        await asyncio.gather(*(client_loop(c, start + duration) for c in sessions))
    finally:
        elapsed = time.perf_counter() - start
        await asyncio.gather(*(c.aclose() for c in sessions))
    return posts, gets, job_ids, elapsed


async def cancel_all(base_url: str, key: str, job_ids: list[str], concurrency: int = 16) -> Counter[str]:
    """DELETE /v1/jobs/{id} for each job: 200 canceled, 409 already ended."""
    outcomes: Counter[str] = Counter()
    queue = list(job_ids)
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, headers=auth(key), timeout=60, limits=limits) as client:

        async def drain() -> None:
            while queue:
                job_id = queue.pop()
                try:
                    r = await client.delete(f"/v1/jobs/{job_id}")
                    outcomes[{200: "canceled", 409: "already ended"}.get(r.status_code, str(r.status_code))] += 1
                except httpx.HTTPError as e:
                    outcomes[type(e).__name__] += 1

        await asyncio.gather(*(drain() for _ in range(concurrency)))
    return outcomes


# --- burst ----------------------------------------------------------------------------------------------


async def list_jobs(client: httpx.AsyncClient) -> tuple[list[dict[str, Any]], int]:
    """Every job of the key, via GET /v2/jobs pagination; and the number of pages read."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {"limit": 100} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/v2/jobs", params=params)).raise_for_status().json()
        pages += 1
        items += page["items"]
        cursor = page.get("nextCursor")
        if not cursor:
            return items, pages


async def burst(
    base_url: str, key: str, media_url: str, count: int, timeout: float, poll_interval: float
) -> dict[str, Any]:
    """Submit `count` jobs at once, then poll the listing until all are terminal or `timeout`."""
    body = {"url": media_url, "model": MODEL}
    submitter = HttpxClient(base_url, key, connections=count)
    async with httpx.AsyncClient(base_url=base_url, headers=auth(key), timeout=120) as client:
        submits = Latencies("POST /v1/diarize (burst)")
        start = time.perf_counter()
        answers = await asyncio.gather(*(timed(submitter, submits, "POST", "/v1/diarize", body) for _ in range(count)))
        await submitter.aclose()
        submit_seconds = time.perf_counter() - start
        submitted = [r.json()["jobId"] for r in answers if r is not None and r.status_code == 200]
        log(f"burst: {len(submitted)}/{count} jobs submitted in {submit_seconds:.2f} s")

        rounds, pages, last_log = 0, 0, start
        done_at: float | None = None
        while True:
            items, round_pages = await list_jobs(client)
            rounds, pages = rounds + 1, pages + round_pages
            statuses = {item["id"]: item["status"] for item in items}
            terminal = sum(statuses.get(job_id) in TERMINAL for job_id in submitted)
            now = time.perf_counter()
            if terminal == len(submitted):
                done_at = now
                break
            if now - start > timeout:
                break
            if now - last_log >= 10:
                log(f"burst: {terminal}/{len(submitted)} terminal after {now - start:.0f} s")
                last_log = now
            await asyncio.sleep(poll_interval)

    wall = (done_at or time.perf_counter()) - start
    final = Counter(statuses.get(job_id, "missing") for job_id in submitted)
    ids_listed = [item["id"] for item in items]
    succeeded = final["succeeded"]
    return {
        "requested": count,
        "submitted": len(submitted),
        "distinct_submitted_ids": len(set(submitted)),
        "submit_seconds": round(submit_seconds, 2),
        "submit_latency": submits.summary(submit_seconds),
        "succeeded": succeeded,
        "failed": final["failed"],
        "canceled": final["canceled"],
        "missing_from_listing": final["missing"],
        "never_terminal": sum(n for status, n in final.items() if status not in (*TERMINAL, "missing")),
        "lost": len(submitted) - sum(final[s] for s in TERMINAL),
        "listed_items": len(ids_listed),
        "listed_distinct_ids": len(set(ids_listed)),
        "listed_not_submitted": len(set(ids_listed) - set(submitted)),
        "all_terminal": done_at is not None,
        "wall_seconds": round(wall, 1),
        "jobs_per_minute": round(60 * succeeded / wall, 1) if wall else math.nan,
        "poll_rounds": rounds,
        "list_pages_read": pages,
        "submitted_ids": submitted,
    }


def job_records(db: Path, job_ids: list[str]) -> list[tuple[str, str, int, str | None, str, str | None]]:
    """(id, status, attempts, worker, created_at, finished_at) of the given jobs, from the SQLite DB."""
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as connection:
        connection.execute("CREATE TEMP TABLE wanted (id TEXT PRIMARY KEY)")
        connection.executemany("INSERT OR IGNORE INTO wanted VALUES (?)", [(i,) for i in job_ids])
        return connection.execute(
            "SELECT jobs.id, status, attempts, worker, created_at, finished_at FROM jobs JOIN wanted USING (id)"
        ).fetchall()


def db_report(db: Path, burst_ids: list[str]) -> dict[str, Any]:
    rows = job_records(db, burst_ids)
    created = [r[4] for r in rows]
    finished = [r[5] for r in rows if r[5]]
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as connection:
        attempts_all = dict(connection.execute("SELECT attempts, COUNT(*) FROM jobs GROUP BY attempts").fetchall())
        status_all = dict(connection.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall())
    span = None
    if created and finished:
        first, last = min(map(datetime.fromisoformat, created)), max(map(datetime.fromisoformat, finished))
        span = round((last - first).total_seconds(), 1)
    return {
        "burst_rows_in_db": len(rows),
        "burst_distinct_ids_in_db": len({r[0] for r in rows}),
        "burst_run_twice": sum(r[2] > 1 for r in rows),
        "burst_attempts": dict(sorted(Counter(r[2] for r in rows).items())),
        "burst_status_in_db": dict(Counter(r[1] for r in rows)),
        "burst_succeeded_never_claimed": sum(r[1] == "succeeded" and r[2] == 0 for r in rows),
        "burst_workers": len({r[3] for r in rows if r[3]}),
        "burst_server_span_seconds": span,
        "all_jobs_by_attempts": {str(k): v for k, v in sorted(attempts_all.items())},
        "all_jobs_by_status": status_all,
    }


# --- the run --------------------------------------------------------------------------------------------


@dataclass
class Options:
    workers: int
    threads_per_worker: int | None
    clients: int
    duration: float
    pace: float
    baseline: float
    clip_seconds: float
    prefill: int | None
    burst: int
    burst_timeout: float
    poll_interval: float
    settle_timeout: float
    json: Path | None
    keep: bool
    client: str


def parse_args() -> Options:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=1, help="worker processes of the server (default 1)")
    parser.add_argument("--threads-per-worker", type=int, help="torch threads per worker (default: the server's)")
    parser.add_argument("--clients", type=int, default=100, help="concurrent clients in the latency phase")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of the latency phase")
    parser.add_argument(
        "--pace", type=float, default=1.0, help="mean seconds a client waits after each request (0: closed loop)"
    )
    parser.add_argument("--baseline", type=float, default=3.0, help="seconds of one client alone first (0: none)")
    parser.add_argument("--clip-seconds", type=float, default=5.0, help="length of the short clip")
    parser.add_argument("--prefill", type=int, help="30 s jobs queued before the latency phase (default: enough)")
    parser.add_argument("--burst", type=int, default=200, help="jobs submitted at once in the burst")
    parser.add_argument("--burst-timeout", type=float, default=900.0, help="seconds to wait for the burst")
    parser.add_argument("--poll-interval", type=float, default=1.0, help="seconds between listings in the burst")
    parser.add_argument("--settle-timeout", type=float, default=300.0, help="seconds to wait for idle workers")
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data dir (server log, database)")
    parser.add_argument(
        "--client",
        choices=sorted(CLIENTS),
        default="lean",
        help="the latency phase's HTTP client: lean (hand-written HTTP/1.1 on uvloop, the default) or httpx "
        "(on asyncio's loop, as before 2026-12-07)",
    )
    return Options(**vars(parser.parse_args()))


def latency_phase(opts: Options, server: Server, key: str, db: Path, full: str, clip: str) -> dict[str, Any]:
    with httpx.Client(base_url=server.base_url, headers=auth(key), timeout=60) as client:
        # Two sequential jobs: the first loads the models in the worker, the second times a warm run.
        for label in ("cold", "warm"):
            start = time.perf_counter()
            job = wait_job(client, submit(client, full))
            seconds = time.perf_counter() - start
            log(f"{label} job on the 30 s sample: {job['status']} in {seconds:.1f} s")
            if job["status"] != "succeeded":
                raise RuntimeError(f"the calibration job ended {job['status']}: {job.get('output')}")
        warm_seconds = seconds
        prefill = opts.prefill or opts.workers * (1 + math.ceil(1.5 * (opts.duration + opts.baseline) / warm_seconds))
        prefill_ids = [submit(client, full) for _ in range(prefill)]
        deadline = time.perf_counter() + 30
        while running_jobs(db) == 0 and time.perf_counter() < deadline:
            time.sleep(0.05)
        log(f"{prefill} jobs on the 30 s sample queued; {running_jobs(db)} running. Load starts.")

    baseline: list[dict[str, Any]] = []
    baseline_ids: list[str] = []
    if opts.baseline > 0:  # one client alone: the service time of a request, without queueing behind others
        bposts, bgets, baseline_ids, belapsed = run_loop(opts.client)(
            load_clients(opts.client, server.base_url, key, clip, 1, opts.baseline)
        )
        for record in (bposts, bgets):
            record.name += " (1 client)"
            baseline.append(record.summary(belapsed))
        log(f"baseline done: {len(bposts.ms)} POST, {len(bgets.ms)} GET in {belapsed:.1f} s")

    monitor = RunningMonitor(db)
    monitor.start()
    cpu_start = CpuSnapshot.take(server.process.pid)
    posts, gets, job_ids, elapsed = run_loop(opts.client)(
        load_clients(opts.client, server.base_url, key, clip, opts.clients, opts.duration, opts.pace)
    )
    cpu = CpuSnapshot.take(server.process.pid).percent_since(cpu_start)
    monitor.stop()
    log(f"load done: {len(posts.ms)} POST, {len(gets.ms)} GET in {elapsed:.1f} s")

    with httpx.Client(base_url=server.base_url, headers=auth(key), timeout=60) as client:
        prefill_status = Counter(client.get(f"/v1/jobs/{j}").json()["status"] for j in prefill_ids)
    cancel_start = time.perf_counter()
    canceled = asyncio.run(cancel_all(server.base_url, key, prefill_ids + baseline_ids + job_ids))
    cancel_seconds = time.perf_counter() - cancel_start
    log(f"canceled leftovers in {cancel_seconds:.1f} s: {dict(canceled)}")
    # A canceled running job stops at its worker's next progress report: wait until the worker is idle.
    settle = wait_workers_idle(server.process.pid, opts.settle_timeout)
    log(f"worker(s) idle {settle:.1f} s after the cancel")

    samples = monitor.samples
    return {
        "calibration_warm_job_seconds": round(warm_seconds, 2),
        "prefill_jobs": prefill,
        "prefill_status_after_phase": dict(prefill_status),
        "elapsed_seconds": round(elapsed, 2),
        "post": posts.summary(elapsed),
        "get": gets.summary(elapsed),
        "all": Latencies(
            "all",
            posts.ms + gets.ms,
            posts.non_2xx + gets.non_2xx,
            posts.transport_errors + gets.transport_errors,
            posts.from_call_ms + gets.from_call_ms,
            posts.server_ms + gets.server_ms,
        ).summary(elapsed),
        "baseline": baseline,
        "jobs_created": len(job_ids) + len(baseline_ids),
        "running_samples": len(samples),
        "running_samples_busy": sum(n > 0 for n in samples),
        "running_max": max(samples, default=0),
        "cpu_percent_of_one_core": cpu,
        "leftovers_cancel": dict(canceled),
        "leftovers_cancel_seconds": round(cancel_seconds, 1),
        "workers_idle_after_cancel_seconds": round(settle, 1),
    }


def main() -> None:
    opts = parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="diarist-load-"))
    options = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(opts).items()}
    results: dict[str, Any] = {"machine": machine_info(), "options": options}
    results["machine"]["busy_before_start_percent_of_one_core"] = busy_percent(2.0)
    server: Server | None = None
    try:
        data_dir = tmp / "data"
        load_key, burst_key = create_key(data_dir, "load"), create_key(data_dir, "burst")
        clip_path = tmp / "clip.wav"
        cut_clip(SAMPLE, clip_path, opts.clip_seconds)
        server = Server.start(data_dir, opts.workers, opts.threads_per_worker)
        ready = server.wait_ready(load_key)
        log(f"server up at {server.base_url} after {ready:.1f} s (data dir {data_dir})")
        db = data_dir / "diarist.db"
        with httpx.Client(base_url=server.base_url, headers=auth(load_key), timeout=60) as client:
            full = upload(client, SAMPLE, "bench/full.wav")
            clip = upload(client, clip_path, "bench/clip.wav")
        with httpx.Client(base_url=server.base_url, headers=auth(burst_key), timeout=60) as client:
            burst_clip = upload(client, clip_path, "bench/clip.wav")

        results["latency"] = latency_phase(opts, server, load_key, db, full, clip)
        log(f"burst of {opts.burst} jobs")
        cpu_start = CpuSnapshot.take(server.process.pid)
        results["burst"] = asyncio.run(
            burst(server.base_url, burst_key, burst_clip, opts.burst, opts.burst_timeout, opts.poll_interval)
        )
        results["burst"]["cpu_percent_of_one_core"] = CpuSnapshot.take(server.process.pid).percent_since(cpu_start)
    except BaseException:
        if server is not None:
            log(f"failed; the end of the server log:\n{server.log_tail()}")
        raise
    finally:
        if server is not None:
            server.stop()
            log(f"server {server.stop_note}, exit code {server.exit_code}")
            results["server"] = {"exit_code": server.exit_code, "stop": server.stop_note}
            results["server"] |= server_log_report(server.log_path)
            if "burst" in results:
                results["db"] = db_report(data_dir / "diarist.db", results["burst"].pop("submitted_ids"))
        if opts.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    print(markdown(results, opts))
    if opts.json:
        opts.json.write_text(json.dumps(results, indent=2) + "\n")


def busy_warning(cpu: dict[str, float]) -> str:
    if cpu["others"] < 20:
        return ""
    return " (**other processes competed for the CPUs: these numbers are not from a quiet machine**)"


def markdown(r: dict[str, Any], opts: Options) -> str:
    m, lat, b, db, srv = r["machine"], r["latency"], r["burst"], r["db"], r["server"]
    threads = opts.threads_per_worker or os.environ.get("DIARIST_THREADS_PER_WORKER") or "server default"
    loop = "closed loop" if opts.pace == 0 else f"one request per ~{opts.pace:g} s each"
    lines = [
        "## diarist API load benchmark",
        "",
        f"- machine: {m['cpu_model']} ({m['processor']}), {m['cpu_count']} CPUs, Python {m['python']}, "
        f"{m['platform']}; busy before the start (other processes): "
        f"{m['busy_before_start_percent_of_one_core']} % of one core",
        f"- options: workers={opts.workers}, threads per worker={threads}, clients={opts.clients}, "
        f"duration={opts.duration:g} s, clip={opts.clip_seconds:g} s, burst={opts.burst}, "
        f"burst timeout={opts.burst_timeout:g} s, poll interval={opts.poll_interval:g} s, model={MODEL}, "
        f"latency client={opts.client}",
        "- server, load generator and worker(s) all run on this machine, on loopback",
        "",
        f"### Latency under load ({opts.clients} clients, {loop}, {lat['elapsed_seconds']:g} s)",
        "",
        "| request | count | req/s | p50 ms | p90 ms | p99 ms | max ms | non-2xx | transport errors "
        "| p99 from the call ms | server p50 / p99 ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in (lat["post"], lat["get"], lat["all"], *lat["baseline"]):
        errors = sum(row["transport_errors"].values())
        lines.append(
            f"| {row['request']} | {row['count']} | {row['req_per_s']} | {row['p50_ms']} | {row['p90_ms']} "
            f"| {row['p99_ms']} | {row['max_ms']} | {row['non_2xx']} | {errors} | {row['p99_from_call_ms']} "
            f"| {row['server_p50_ms']} / {row['server_p99_ms']} |"
        )
    worst = max(lat["post"]["p99_ms"], lat["get"]["p99_ms"])
    worst_server = max(lat["post"]["server_p99_ms"], lat["get"]["server_p99_ms"])
    verdict = "met" if worst <= TARGET_P99_MS else "NOT met"
    cpu, bcpu = lat["cpu_percent_of_one_core"], b["cpu_percent_of_one_core"]
    lines += [
        "",
        f"- target p99 <= {TARGET_P99_MS:g} ms: **{verdict}** (worst p99 {worst} ms); times run from the "
        "request's first byte written to its body read; `p99 from the call` counts from the call, with the "
        "client's own wait before sending (its event loop busy with the other clients); `server` is the "
        "server's own time (its `Server-Timing` header: arrival to the response's start), without the "
        f"network's or the load generator's (worst server p99 {worst_server} ms)",
        (
            f"- closed loop without think time: mean latency ~ clients / throughput = "
            f"{1000 * opts.clients / lat['all']['req_per_s']:.0f} ms (Little's law)"
            if opts.pace == 0
            else f"- each client waits 0.5-1.5 x {opts.pace:g} s after each request, like a client polling its job"
        )
        + (
            f"; the `(1 client)` rows: one client alone for {opts.baseline:g} s just before, worker busy too "
            "(the service time without queueing)"
            if lat["baseline"]
            else ""
        ),
        f"- worker busy: a job was `running` in {lat['running_samples_busy']}/{lat['running_samples']} "
        f"database samples (every 0.5 s; at most {lat['running_max']} at once)",
        f"- {lat['prefill_jobs']} jobs on the 30 s sample queued first (a warm one took "
        f"{lat['calibration_warm_job_seconds']} s alone); after the phase: {lat['prefill_status_after_phase']}",
        f"- CPU during the phase, % of one core (machine total {100 * (m['cpu_count'] or 1)} %): "
        f"load generator {cpu['bench']}, API server {cpu['server']}, worker processes {cpu['workers']}, "
        f"other processes on the machine {cpu['others']}{busy_warning(cpu)}",
        f"- {lat['jobs_created']} jobs created by the clients; they and the 30 s jobs were then canceled with "
        f"DELETE /v1/jobs/{{id}} before the burst, so it measures only itself: {lat['leftovers_cancel']} "
        f"in {lat['leftovers_cancel_seconds']} s; the worker(s) went idle "
        f"{lat['workers_idle_after_cancel_seconds']} s after that (a canceled running job stops at its next "
        "progress report)",
        "",
        f"### Burst ({b['requested']} jobs on the {opts.clip_seconds:g} s clip, submitted at once)",
        "",
        "| submitted | succeeded | failed | canceled | lost | run twice | distinct ids | wall s | jobs/min |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {b['submitted']} | {b['succeeded']} | {b['failed']} | {b['canceled']} | {b['lost']} "
        f"| {db['burst_run_twice']} | {b['listed_distinct_ids']} | {b['wall_seconds']} | {b['jobs_per_minute']} |",
        "",
        f"- submission: {b['submitted']}/{b['requested']} accepted in {b['submit_seconds']} s "
        f"(POST p50 {b['submit_latency']['p50_ms']} ms, p99 {b['submit_latency']['p99_ms']} ms, "
        f"max {b['submit_latency']['max_ms']} ms, non-2xx {b['submit_latency']['non_2xx']})",
        f"- all terminal: {'yes' if b['all_terminal'] else 'NO (timed out)'}; wall = first POST to the "
        f"listing showing all terminal (polled every {opts.poll_interval:g} s: {b['poll_rounds']} rounds, "
        f"{b['list_pages_read']} pages of GET /v2/jobs); server side, first created to last finished: "
        f"{db['burst_server_span_seconds']} s",
        f"- lost = {b['missing_from_listing']} missing from the listing + {b['never_terminal']} never terminal; "
        f"listing: {b['listed_items']} items, {b['listed_distinct_ids']} distinct ids, "
        f"{b['listed_not_submitted']} not submitted by the burst",
        f"- database: {db['burst_rows_in_db']} rows ({db['burst_distinct_ids_in_db']} distinct ids), "
        f"attempts {db['burst_attempts']}, status {db['burst_status_in_db']}, "
        f"{db['burst_workers']} worker name(s), succeeded but never claimed: {db['burst_succeeded_never_claimed']}",
        f"- CPU during the burst, % of one core: load generator {bcpu['bench']}, API server {bcpu['server']}, "
        f"worker processes {bcpu['workers']}, other processes on the machine {bcpu['others']}{busy_warning(bcpu)}",
        f"- all jobs of the run by attempts: {db['all_jobs_by_attempts']}; by status: {db['all_jobs_by_status']}",
        "",
        "### Server",
        "",
        f"- {srv['stop']}, exit code {srv['exit_code']}",
        f"- access log status codes: {srv['access_log_status_counts']}",
        f"- error/warning lines in its log: {srv['problem_lines']}",
    ]
    lines += [f"  - `{p[:200]}`" for p in srv["distinct_problems"]]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
