"""Fleet benchmarks: dispatch overhead, throughput of real jobs, recovery after kill -9, heartbeat load.

    PYTHONPATH=src python bench/dispatch.py [--parts dispatch,throughput,recovery,heartbeat] [--jobs 200]

Each part starts its own servers and workers (fresh data dirs under a temporary folder, a fresh
PostgreSQL database per run on `--postgres`, Celery on the Redis `--broker`) and prints a markdown table.

- dispatch: a no-op pipeline (bench/noop_worker.py), 1 and 3 workers, the local executor on SQLite
  and on PostgreSQL and the celery executor on PostgreSQL + Redis. A burst of `--jobs` jobs on a
  1 s upload gives jobs/s (first submit to last finish); then `--paced` jobs sent 20 a second, below
  capacity, give the submit-to-start latency: the job row's `created_at` to its claim (`heartbeat_at`,
  which a claim sets and the first heartbeat only refreshes `heartbeat_seconds` later).
- throughput: the real pipeline on the 30 s dev sample, 1 and 2 `diarist worker` processes (celery,
  PostgreSQL), after one warm-up job per worker: jobs/minute and the mean real-time factor
  (claim, seen by polling the rows every 50 ms, to finish / audio seconds).
- recovery: a job on a no-op worker that sleeps 120 s; the worker running it is killed with SIGKILL
  (its whole process group), and the time from the kill to the job's claim by the other worker is read
  from the database; with the default lease settings and with a short lease (3 s lease, 1 s heartbeat
  and reaper).
- heartbeat: the cost of one lease heartbeat (`Store.heartbeat`) on PostgreSQL: `--writes` of them
  from one connection, timed on the client and as CPU time of the PostgreSQL backend that ran them
  (/proc), then the write rate and DB CPU share of 100 workers at the default `heartbeat_seconds`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from sqlalchemy import create_engine, select, text

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from common import machine, write_wav  # noqa: E402

from diarist.audio import load_audio  # noqa: E402
from diarist.jobs.store import Store  # noqa: E402
from diarist.jobs.tables import Job  # noqa: E402
from diarist.settings import Settings  # noqa: E402

SAMPLE = HERE / "data" / "dev" / "pyannote-sample.wav"
TERMINAL = ("succeeded", "failed", "canceled")
DEFAULTS = Settings.model_fields
SHORT_LEASE = {"lease_seconds": 3.0, "heartbeat_seconds": 1.0, "reaper_interval_seconds": 1.0}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Setup:
    """One configuration: where the jobs live, which executor runs them, and the lease settings."""

    root: Path
    executor: str  # local | celery
    database_url: str | None  # None: SQLite in the API's data dir, the embedded default
    broker_url: str
    lease: dict[str, float] = field(default_factory=dict)

    def config(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        lines = [f'executor = "{self.executor}"']
        if self.database_url:
            lines.append(f'database_url = "{self.database_url}"')
        lines += [f'broker_url = "{self.broker_url}"', *(f"{k} = {v}" for k, v in self.lease.items())]
        (data_dir / "diarist.toml").write_text("\n".join(lines) + "\n")


class Processes:
    """The server and workers of one run, each in its own process group, stopped at the end."""

    def __init__(self) -> None:
        self.running: list[subprocess.Popen] = []

    def start(self, command: list[str], data_dir: Path, env: dict[str, str]) -> subprocess.Popen:
        out = (data_dir / "process.log").open("ab")
        environment = {**os.environ, "PYTHONPATH": str(ROOT / "src"), **env}
        process = subprocess.Popen(
            command, env=environment, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.running.append(process)
        return process

    def stop(self) -> None:
        for process in self.running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.running:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def wait_log(data_dir: Path, needle: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    path = data_dir / "process.log"
    while needle not in (path.read_text(errors="replace") if path.exists() else ""):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{data_dir.name} did not start:\n{path.read_text(errors='replace')[-3000:]}")
        time.sleep(0.2)


def start_fleet(
    setup: Setup, procs: Processes, workers: int, noop: bool, env: dict[str, str] | None = None
) -> tuple[str, str, dict[str, subprocess.Popen]]:
    """Start the API (with its local workers, or celery workers beside it); its URL, a key, the workers by name.

    With SQLite, `setup.database_url` is set to the API's database once it is known.
    """
    env = env or {}
    entry = [str(HERE / "noop_worker.py")] if noop else ["-m", "diarist"]
    api_dir, port = setup.root / f"api-{uuid.uuid4().hex[:6]}", free_port()
    setup.config(api_dir)
    setup.database_url = setup.database_url or f"sqlite:///{api_dir / 'diarist.db'}"
    local = setup.executor == "local"
    serve = [sys.executable, *entry, "serve", "--data-dir", str(api_dir), "--port", str(port)]
    server = procs.start([*serve, "--workers", str(workers if local else 0)], api_dir, env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            httpx.get(f"{url}/openapi.json", timeout=1)
            break
        except httpx.TransportError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((api_dir / "process.log").read_text(errors="replace")[-3000:]) from None
            time.sleep(0.2)
    created = subprocess.run(
        [
            sys.executable,
            "-m",
            "diarist",
            "keys",
            "create",
            "--name",
            "bench",
            "--rate-limit",
            "0",
            "--data-dir",
            str(api_dir),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        check=True,
    )
    key = created.stdout.splitlines()[0].split()[-1]
    started = {"server": server} if local else {}
    for i in range(0 if local else workers):
        started[f"bench{i}"] = start_worker(setup, procs, f"bench{i}", noop, env)
    return url, key, started


def start_worker(setup: Setup, procs: Processes, name: str, noop: bool, env: dict[str, str]) -> subprocess.Popen:
    """A `diarist worker` with its own data dir; uploads reach it through a link to the API's media."""
    entry = [str(HERE / "noop_worker.py")] if noop else ["-m", "diarist"]
    data_dir = setup.root / f"worker-{name}"
    setup.config(data_dir)
    (data_dir / "media").symlink_to(next(setup.root.glob("api-*")) / "media")  # no shared media on this branch
    command = [sys.executable, *entry, "worker", "--data-dir", str(data_dir), "--concurrency", "1"]
    process = procs.start([*command, "--name", name], data_dir, env)
    wait_log(data_dir, "ready: queues", process)
    return process


def upload(client: httpx.Client, data: bytes) -> str:
    media_url = f"media://bench-{uuid.uuid4().hex[:8]}.wav"
    target = client.post("/v1/media/input", json={"url": media_url})
    target.raise_for_status()
    httpx.put(target.json()["url"], content=data, timeout=60).raise_for_status()
    return media_url


def submit(client: httpx.Client, media_url: str) -> str:
    answer = client.post("/v1/diarize", json={"url": media_url})
    answer.raise_for_status()
    return answer.json()["jobId"]


def jobs(database_url: str, ids: list[str]) -> list[Job]:
    store = Store(database_url)
    try:
        with store.reading() as session:
            return list(session.scalars(select(Job).where(Job.id.in_(ids))))
    finally:
        store.close()


def wait_ended(database_url: str, ids: list[str], timeout: float) -> list[Job]:
    deadline = time.monotonic() + timeout
    while True:
        rows = jobs(database_url, ids)
        if sum(job.status in TERMINAL for job in rows) == len(ids) or time.monotonic() > deadline:
            return rows
        time.sleep(0.5)


def watch_claims(database_url: str, ids: list[str], timeout: float) -> dict[str, float]:
    """Poll the jobs every 50 ms until they end: when each was first seen running (its claim, to 50 ms).

    A real job's progress reports move `heartbeat_at`, so the row no longer holds its claim time.
    """
    claimed: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now, rows = time.time(), jobs(database_url, ids)
        for job in rows:
            if job.status != "pending" and job.id not in claimed:
                claimed[job.id] = now
        if all(job.status in TERMINAL for job in rows):
            break
        time.sleep(0.05)
    return claimed


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


# --- databases --------------------------------------------------------------------------------------


def create_database(admin_url: str) -> str:
    name = f"diarist_fleetbench_{uuid.uuid4().hex[:8]}"
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return admin_url.rsplit("/", 1)[0] + "/" + name


def drop_database(admin_url: str, url: str) -> None:
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
    engine.dispose()


@contextlib.contextmanager
def setup_for(args: argparse.Namespace, executor: str, database: str, **lease: float):
    root = Path(tempfile.mkdtemp(prefix="fleetbench-"))
    url = create_database(args.postgres) if database == "postgresql" else None
    procs = Processes()
    try:
        yield Setup(root, executor, url, args.broker, lease), procs
    finally:
        procs.stop()
        if url is not None:
            drop_database(args.postgres, url)
        shutil.rmtree(root, ignore_errors=True)


# --- parts ------------------------------------------------------------------------------------------


def dispatch(args: argparse.Namespace) -> None:
    rows = []
    for executor, database in (("local", "sqlite"), ("local", "postgresql"), ("celery", "postgresql")):
        for workers in (1, 3):
            with setup_for(args, executor, database) as (setup, procs):
                url, key, _ = start_fleet(setup, procs, workers, noop=True)
                client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
                clip = setup.root / "clip.wav"
                write_wav(clip, load_audio(SAMPLE)[:16000])
                media_url = upload(client, clip.read_bytes())
                log(f"{executor}/{database}, {workers} workers: burst of {args.jobs}")
                start = time.time()
                with ThreadPoolExecutor(4) as pool:
                    burst = list(pool.map(submit, [client] * args.jobs, [media_url] * args.jobs))
                ended = wait_ended(setup.database_url, burst, 600)
                done = [job for job in ended if job.status == "succeeded"]
                last = max(job.finished_at.timestamp() for job in done)
                rate = len(done) / (last - start)
                log(f"paced: {args.paced} jobs at 20/s")
                paced = []
                for _ in range(args.paced):
                    paced.append(submit(client, media_url))
                    time.sleep(0.05)
                ended = wait_ended(setup.database_url, paced, 300)
                waits = [
                    1000 * (job.heartbeat_at - job.created_at).total_seconds() for job in ended if job.heartbeat_at
                ]
                ok = sum(job.status == "succeeded" for job in ended)
                rows.append(
                    (
                        executor,
                        database,
                        workers,
                        len(done),
                        args.jobs,
                        rate,
                        percentile(waits, 50),
                        percentile(waits, 99),
                        ok,
                    )
                )
                client.close()
    print("\n| executor | database | workers | burst done | jobs/s | start p50 ms | start p99 ms | paced done |")
    print("|---|---|---|---|---|---|---|---|")
    for executor, database, workers, done, total, rate, p50, p99, ok in rows:
        print(
            f"| {executor} | {database} | {workers} | {done}/{total} | {rate:.1f} | {p50:.0f} | {p99:.0f} "
            f"| {ok}/{args.paced} |"
        )


def throughput(args: argparse.Namespace) -> None:
    rows = []
    for workers in (1, 2):
        env = {"DIARIST_THREADS_PER_WORKER": str(max(1, 2 // workers))}
        with setup_for(args, "celery", "postgresql") as (setup, procs):
            url, key, _ = start_fleet(setup, procs, workers, noop=False, env=env)
            client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
            media_url = upload(client, SAMPLE.read_bytes())
            log(f"real jobs, {workers} workers: warm-up")
            warm = [submit(client, media_url) for _ in range(workers)]
            wait_ended(setup.database_url, warm, 600)
            log(f"real jobs, {workers} workers: {args.real_jobs} jobs")
            start = time.time()
            ids = [submit(client, media_url) for _ in range(args.real_jobs)]
            claimed = watch_claims(setup.database_url, ids, 1200)
            done = [job for job in jobs(setup.database_url, ids) if job.status == "succeeded"]
            wall = max(job.finished_at.timestamp() for job in done) - start
            rtf = statistics.mean(
                (job.finished_at.timestamp() - claimed[job.id]) / job.audio_seconds for job in done if job.attempts == 1
            )
            rows.append(
                (
                    workers,
                    env["DIARIST_THREADS_PER_WORKER"],
                    len(done),
                    args.real_jobs,
                    wall,
                    60 * len(done) / wall,
                    rtf,
                )
            )
            client.close()
    print("\n| workers | threads each | jobs done | wall s | jobs/minute | mean RTF |")
    print("|---|---|---|---|---|---|")
    for workers, threads, done, total, wall, per_minute, rtf in rows:
        print(f"| {workers} | {threads} | {done}/{total} | {wall:.1f} | {per_minute:.2f} | {rtf:.3f} |")


def recovery(args: argparse.Namespace) -> None:
    """Heartbeat_at is refreshed while a job runs: the claim time of attempt 2 is read by polling."""
    rows = []
    defaults = {name: DEFAULTS[name].default for name in SHORT_LEASE}
    for label, lease in (("default", defaults), ("short", SHORT_LEASE)):
        with setup_for(args, "celery", "postgresql", **lease) as (setup, procs):
            url, key, workers = start_fleet(setup, procs, 2, noop=True, env={"BENCH_NOOP_SLEEP": "120"})
            client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
            clip = setup.root / "clip.wav"
            write_wav(clip, load_audio(SAMPLE)[:16000])
            media_url = upload(client, clip.read_bytes())
            times = []
            for repeat in range(args.repeat):
                if len(workers) < 2:  # one was killed: start a fresh one so that two take part again
                    name = f"spare{repeat}"
                    workers[name] = start_worker(setup, procs, name, True, {"BENCH_NOOP_SLEEP": "120"})
                job_id = submit(client, media_url)
                while (job := jobs(setup.database_url, [job_id])[0]).status != "running":
                    time.sleep(0.1)
                time.sleep(1.0)  # mid-job
                owner = job.worker.split(":")[0]  # "<node>:<pid>"; celery may write the node as name@host
                name = next(n for n in workers if owner == n or owner.startswith(f"{n}@") or owner.endswith(f"@{n}"))
                victim = workers.pop(name)
                os.killpg(victim.pid, signal.SIGKILL)
                killed = time.time()
                victim.wait()
                log(f"{label} lease: killed {owner} running {job_id}")
                while True:
                    job = jobs(setup.database_url, [job_id])[0]
                    if job.status == "running" and job.attempts == 2:
                        times.append(job.heartbeat_at.timestamp() - killed)
                        break
                    if time.time() - killed > 300:
                        raise RuntimeError(f"job {job_id} not running again 300 s after the kill: {job.status}")
                    time.sleep(0.05)
                client.delete(f"/v1/jobs/{job_id}")
                wait_ended(setup.database_url, [job_id], 60)
            rows.append((label, lease, times))
            client.close()
    print("\n| lease settings | lease / heartbeat / reaper s | runs | kill to running again: mean s | min | max |")
    print("|---|---|---|---|---|---|")
    for label, lease, times in rows:
        settings = " / ".join(f"{lease[k]:g}" for k in SHORT_LEASE)
        print(
            f"| {label} | {settings} | {len(times)} | {statistics.mean(times):.1f} | {min(times):.1f} "
            f"| {max(times):.1f} |"
        )


def backend_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def heartbeat(args: argparse.Namespace) -> None:
    with setup_for(args, "celery", "postgresql") as (setup, _):
        store = Store(setup.database_url)
        store.migrate()
        key = store.create_key("bench").record
        job = store.create_job(uuid.uuid4().hex, key.id, "diarize", {"url": "media://x.wav"}, status="pending")
        job = store.claim_job("bench", job.id)
        with store.engine.connect() as conn:  # the pool holds one connection: the heartbeats reuse it
            pid = conn.scalar(text("select pg_backend_pid()"))
        for _ in range(100):  # warm the connection and the plan
            store.heartbeat(job.id, job.attempts)
        cpu, start = backend_cpu_seconds(pid), time.perf_counter()
        for _ in range(args.writes):
            assert store.heartbeat(job.id, job.attempts)
        wall, cpu = time.perf_counter() - start, backend_cpu_seconds(pid) - cpu
        store.close()
    every = DEFAULTS["heartbeat_seconds"].default
    # Each busy worker writes its job's lease and its own `workers` row once per heartbeat_seconds.
    writes = 100 * 2 / every
    per_write_ms, cpu_ms = 1000 * wall / args.writes, 1000 * cpu / args.writes
    print(f"\n{args.writes} heartbeats from one connection: {per_write_ms:.2f} ms each round trip, {cpu_ms:.3f} ms")
    print("of PostgreSQL backend CPU each (utime+stime of the backend process).\n")
    print("| workers | heartbeat_seconds | writes/s | DB CPU (ms/s) | share of one core |")
    print("|---|---|---|---|---|")
    print(f"| 100 | {every:g} | {writes:.0f} | {writes * cpu_ms:.1f} | {writes * cpu_ms / 10:.2f} % |")


PARTS = {"dispatch": dispatch, "throughput": throughput, "recovery": recovery, "heartbeat": heartbeat}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated: " + ", ".join(PARTS))
    parser.add_argument("--jobs", type=int, default=200, help="no-op jobs in each dispatch burst")
    parser.add_argument("--paced", type=int, default=100, help="no-op jobs sent 20 a second for the latency")
    parser.add_argument("--real-jobs", type=int, default=6, help="30 s jobs per throughput run")
    parser.add_argument("--repeat", type=int, default=3, help="kills per lease setting")
    parser.add_argument("--writes", type=int, default=5000, help="heartbeats timed")
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/5")
    args = parser.parse_args()
    print(f"Machine: {machine()}; load before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}")
    for part in args.parts.split(","):
        PARTS[part](args)
    print(f"\nload after: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}")


if __name__ == "__main__":
    main()
