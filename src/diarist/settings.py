"""Service settings, from command-line flags, `DIARIST_*` environment variables or a TOML file.

Precedence: flags > environment > file > defaults. The file is `$DIARIST_CONFIG` if set, else
`<data dir>/diarist.toml` when it exists. Every piece of state lives under `data_dir`.
"""

from __future__ import annotations

import os
import socket
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from diarist.vocabulary import DEFAULT_DEVICE, DEVICES

GIB = 1024**3


CORES_PER_WORKER = 4  # default worker count: one per this many usable cores


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. a container's cpuset), not all the machine's."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_workers() -> int:
    """One worker per CORES_PER_WORKER usable cores, at least one.

    Each worker uses its share of the cores on several threads (see `worker_threads`); fewer,
    wider workers keep memory (up to 1 GB each) down, and jobs are seldom many at once.
    """
    return max(1, usable_cores() // CORES_PER_WORKER)


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "diarist"


class Settings(BaseSettings):
    """Everything an operator can set. Field `foo_bar` is `DIARIST_FOO_BAR` in the environment."""

    model_config = SettingsConfigDict(env_prefix="DIARIST_", extra="forbid")

    data_dir: Path = Field(default_factory=default_data_dir)  # all local state; default ~/.local/share/diarist
    database_url: str | None = None  # default: SQLite at <data_dir>/diarist.db; fleets: postgresql+psycopg://...
    host: str = "127.0.0.1"  # address the API listens on
    port: int = 8000  # port the API listens on
    public_url: str | None = None  # base of upload/download URLs handed to clients; default: the request's
    # This replica's address as workers on other machines reach it: they fetch the uploads it holds from there.
    # Default: http://<host>:<port>, with this machine's name when listening on every address (docs/deploy.md).
    internal_url: str | None = None
    # Rate limits shared by every API replica; default: the broker when it is Redis in celery mode, else in memory.
    redis_url: str | None = None
    # Local worker processes; 0 runs no jobs (external workers only). Default: usable cores / 4, at least 1.
    workers: int = Field(default_factory=default_workers, ge=0)
    threads_per_worker: int | None = None  # threads in each worker; default: usable cores / workers
    worker_nice: int = Field(default=10, ge=0, le=19)  # workers yield the CPU to the API server
    # Where workers run the models: auto (the default: cuda where PyTorch sees a GPU, else cpu), cpu or cuda.
    device: str = DEFAULT_DEVICE
    access_log: bool = False  # one log line per request (URL tokens hidden); off: it costs a tenth of the CPU
    # Set: /metrics needs `Authorization: Bearer <it>`, and /health and /readyz show their checks only with it.
    ops_token: SecretStr | None = None
    # /metrics' job figures and /health's database check are read this often at most, whatever the scrapes.
    ops_cache_seconds: float = Field(default=10.0, ge=0)

    # Transport limits against oversized, slow or abusive clients (docs/api.md, "Limits and timeouts").
    max_json_bytes: int = Field(default=1280 * 1024, ge=1)  # request bodies but uploads; fits 50 voiceprints
    max_header_bytes: int = Field(default=64 * 1024, ge=1024)  # request line and headers together
    header_timeout: float = Field(default=10.0, gt=0)  # to send the request line and headers
    keep_alive_timeout: float = Field(default=5.0, gt=0)  # an idle connection between requests
    body_idle_timeout: float = Field(default=15.0, gt=0)  # longest pause between two pieces of a body
    body_min_rate: int = Field(default=1024, ge=0)  # bytes/s a body must average over each window
    body_rate_window: float = Field(default=30.0, gt=0)  # seconds
    max_connections: int = Field(default=1024, ge=1)  # beyond it, new connections are closed at once
    max_connections_per_ip: int = Field(default=256, ge=1)  # open connections from one client address
    # A key is read from the database at most this often per API process: a revoked key is refused this
    # long after at most. 0: every request reads its key.
    key_cache_seconds: float = Field(default=1.0, ge=0)
    auth_failures_per_minute: int = Field(default=60, ge=0)  # per client IP; then 429; 0 = unlimited
    # Reverse proxies whose X-Forwarded-For names the client; none: the header is ignored, so a
    # local client cannot spoof its address around (or onto others with) the per-address limits.
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)

    rate_limit_per_minute: int = Field(default=100, ge=0)  # per key, sliding minute; 0 = unlimited
    result_ttl_hours: float = 24.0  # job outputs are deleted this long after the job ends
    media_ttl_hours: float = 48.0  # uploads are deleted this long after they were written
    upload_url_ttl_seconds: int = 3600  # validity of the pre-signed PUT/GET URLs
    max_input_bytes: int = GIB  # largest input file, uploaded or fetched
    max_duration_hours: float = 24.0  # longest input audio
    max_attempts: int = 3  # a job whose worker died this many times fails instead of running again
    # Jobs of one key running at once, across the fleet; the others wait, pending. 0: no limit (the
    # default: a cap keeps a worker idle while one key has jobs waiting). A server shared by several
    # keys sets it below its worker slots, so that one key cannot fill every worker.
    max_running_jobs_per_key: int = Field(default=0, ge=0)

    allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)  # may be private/loopback
    fetch_connect_timeout: float = 10.0  # seconds to connect to an input URL's host
    fetch_read_timeout: float = 30.0  # longest wait for the next bytes of an input URL
    fetch_max_redirects: int = 5  # redirects followed when fetching an input URL
    fetch_total_timeout: float = 3600.0  # a whole download; 1 GiB in an hour needs only 300 kB/s
    fetch_min_rate: int = Field(default=8 * 1024, ge=0)  # bytes/s a download must average over each window
    fetch_rate_window: float = Field(default=30.0, gt=0)  # seconds
    # Times a job goes back to the queue when the API replica holding its upload does not answer (it
    # restarts), 5 s, 10 s, 20 s … at most 5 min later (about 15 min in all); then it fails.
    origin_retries: int = Field(default=8, ge=0)

    webhook_timeout: float = 10.0  # seconds a webhook receiver has to answer
    # Seconds before each webhook attempt (comma-separated in the environment); then it is given up.
    webhook_retry_delays: Annotated[list[float], NoDecode] = Field(default_factory=lambda: [0.0, 60.0, 300.0])
    webhook_threads: int = Field(default=8, ge=1)  # deliveries sent at once
    janitor_interval_seconds: float = 600.0  # how often expired outputs and uploads are deleted
    asr_models: Path | None = None  # operator-installed ASR models, one folder each; default <data_dir>/asr-models

    # Store and storage limits (backend hardening).
    database_busy_timeout_seconds: float = Field(default=30.0, gt=0)  # a request's lock waits, in all; then 503
    max_storage_bytes_per_key: int = Field(default=10 * GIB, ge=0)  # uploads kept per key; keys may override

    # Live streams (POST /v1/live and its WebSocket). Each runs in this replica's live engine process;
    # a stream takes about a tenth of a core (docs/benchmarks.md).
    # Streams open at once on this replica, then 429 (0: live off): 16 held real time on 2 cores (benchmarks.md).
    # Default: 4 per usable core.
    live_max_streams: int = Field(default_factory=lambda: 4 * usable_cores(), ge=0)
    live_max_streams_per_key: int = Field(default=2, ge=1)  # streams one key has open at once
    # Threads of the live engine process; default: usable cores.
    live_threads: int = Field(default_factory=lambda: max(1, usable_cores()), ge=1)
    live_token_ttl_seconds: float = Field(default=60.0, gt=0)  # a stream's URL must be opened within this
    live_idle_timeout: float = Field(default=30.0, gt=0)  # a connection that sends nothing this long is closed
    live_max_hours: float = Field(default=24.0, gt=0)  # longest stream
    live_send_queue: int = Field(default=1024, ge=1)  # events waiting for a client that does not read; then closed
    # Browsers send an Origin: a socket from a page on another origin is refused unless listed here.
    live_allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # Scale-out (docs/deploy.md). local: worker processes beside the API; celery: the API publishes
    # each job to the broker and `diarist worker` processes, anywhere, run them.
    executor: Literal["local", "celery"] = "local"
    broker_url: str = "redis://127.0.0.1:6379/0"  # Celery broker: redis://… or amqp://…
    # A running job belongs to its worker while the worker refreshes its lease (heartbeat_at) at least
    # this often; past it, any API or worker process re-queues the job (its attempt number fences the old run).
    lease_seconds: float = Field(default=30.0, gt=0)
    heartbeat_seconds: float = Field(default=5.0, gt=0)  # how often a running job's lease is refreshed
    reaper_interval_seconds: float = Field(default=5.0, gt=0)  # how often expired leases are looked for
    # Celery: a pending job whose message was published this long ago is published again (a lost
    # message, e.g. a broker restarted without persistence); duplicates are dropped at the claim.
    republish_seconds: float = Field(default=60.0, gt=0)

    def worker_threads(self) -> int:
        """Threads each local worker runs its models on: the usable cores shared out among the workers.

        A job that also transcribes splits them between diarization and speech recognition, so a
        worker never runs more threads than its share. The API server needs no core of its own:
        workers run at `worker_nice`, so requests win any contention.
        """
        return self.threads_per_worker or max(1, usable_cores() // max(1, self.workers))

    @model_validator(mode="after")
    def _lease_outlives_heartbeats(self) -> Settings:
        # A lease that expires between two heartbeats would re-queue jobs that are running fine.
        if self.heartbeat_seconds * 2 > self.lease_seconds:
            raise ValueError(
                f"heartbeat_seconds ({self.heartbeat_seconds:g}) must be at most half of lease_seconds "
                f"({self.lease_seconds:g}), so that one late heartbeat does not lose a running job"
            )
        return self

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        if value not in DEVICES:
            raise ValueError(f"must be one of: {', '.join(DEVICES)}")
        return value

    @field_validator("allowed_hosts", "trusted_proxies", "live_allowed_origins", mode="before")
    @classmethod
    def _split_hosts(cls, value: Any) -> Any:
        return [h.strip() for h in value.split(",") if h.strip()] if isinstance(value, str) else value

    @field_validator("internal_url")
    @classmethod
    def _check_internal_url(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
                raise ValueError("must be an http(s) URL with a host and no query, e.g. http://api-1.internal:8000")
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL, e.g. redis://127.0.0.1:6379/0")
        return value

    @field_validator("webhook_retry_delays", mode="before")
    @classmethod
    def _split_delays(cls, value: Any) -> Any:
        return [float(d) for d in value.split(",") if d.strip()] if isinstance(value, str) else value

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'diarist.db'}"

    @property
    def shared_redis(self) -> str | None:
        """The Redis that holds the rate limits, or None: each process counts in its own memory."""
        if self.redis_url:
            return self.redis_url
        redis = self.broker_url.startswith(("redis://", "rediss://"))
        return self.broker_url if self.executor == "celery" and redis else None

    @property
    def own_internal_url(self) -> str:
        """Where workers reach this replica: `internal_url`, else derived from the address it listens on."""
        if self.internal_url:
            return self.internal_url.rstrip("/")
        host = self.host
        if host in ("", "0.0.0.0", "::"):  # every address: the machine's name is the one others know
            host = socket.gethostname()
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def asr_models_dir(self) -> Path:
        return self.asr_models or self.data_dir / "asr-models"

    @property
    def media_dir(self) -> Path:
        return self.data_dir / "media"

    @property
    def downloads_dir(self) -> Path:
        return self.data_dir / "downloads"

    @classmethod
    def load(cls, **flags: Any) -> Settings:
        """Settings from flags (None = not given), the environment and the config file."""
        given = {k: v for k, v in flags.items() if v is not None}
        data_dir = Path(given.get("data_dir") or os.environ.get("DIARIST_DATA_DIR") or default_data_dir())
        path = os.environ.get("DIARIST_CONFIG")
        config = Path(path) if path else data_dir / "diarist.toml"
        from_file: dict[str, Any] = {}
        if path or config.exists():
            with config.open("rb") as f:
                from_file = tomllib.load(f)
        env_names = {name for name in cls.model_fields if f"DIARIST_{name.upper()}" in os.environ}
        # File values only fill what the environment does not set; flags win over both.
        defaults = {k: v for k, v in from_file.items() if k not in env_names}
        return cls(**{**defaults, "data_dir": data_dir, **given})
