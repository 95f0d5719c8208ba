"""Operations endpoints: `/healthz` (liveness), `/readyz` (readiness) and `/metrics` (Prometheus).

Like `/health`, they need no API key and stay outside the API's limits; with `ops_token` set,
`/metrics` and the checks of `/readyz` need that token (health.operator). Bodies name the failing
check, never an address or a secret. Job metrics are read from the database, at most once per
`ops_cache_seconds` whatever the number of scrapes, so every API process answers the same (as of
that read); only the request latency histogram is this process's own, as usual with Prometheus.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.metrics_core import GaugeHistogramMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from diarist.api.errors import ApiProblem
from diarist.api.routes.health import Cached, database_check, operator
from diarist.errors import DiaristError
from diarist.jobs.live import LiveEngine
from diarist.jobs.stats import JobStats, job_stats
from diarist.jobs.store import Store, head_revision, known_revision
from diarist.jobs.tables import FAILED, SUCCEEDED
from diarist.settings import Settings

router = APIRouter()
METHODS = {"GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"}
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
DURATION_BUCKETS = (1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0)
RTF_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0)  # processing seconds per audio second
BROKER_TIMEOUT_SECONDS = 3.0


@router.get("/healthz", include_in_schema=False)
async def healthz() -> JSONResponse:
    """200 while the process serves requests; it touches nothing else, so a busy database never restarts it."""
    return JSONResponse({"status": "ok"})


@router.get("/readyz", include_in_schema=False)
def readyz(request: Request) -> JSONResponse:
    """200 when this process can take work: database answering at the code's schema, broker in celery mode.

    Read at each call, as a probe must; the checks are in the body only for an `operator`.
    """
    state = request.app.state
    checks = readiness(state.services.store, state.services.settings)
    ok = all(check["ok"] for check in checks.values())
    body = {"status": "ready" if ok else "unready"} | ({"checks": checks} if operator(request) else {})
    return JSONResponse(body, status_code=200 if ok else 503)


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    """Prometheus text; 401 without the `ops_token` when one is set."""
    if not operator(request):
        raise ApiProblem(401, "The metrics need this server's operator token: send 'Authorization: Bearer <token>'.")
    return Response(generate_latest(request.app.state.metrics), media_type=CONTENT_TYPE_LATEST)


def readiness(store: Store, settings: Settings) -> dict[str, dict[str, Any]]:
    """Each readiness check's `{ok, error}`."""
    checks = {"database": database_check(store)}
    if checks["database"]["ok"]:
        checks["migrations"] = migration_check(store)
    else:
        checks["migrations"] = {"ok": False, "error": "Not checked: the database does not answer."}
    if settings.executor == "celery":
        checks["broker"] = broker_check(settings.broker_url)
    return checks


def migration_check(store: Store) -> dict[str, Any]:
    """Whether the database's schema has what this code needs.

    Behind the code (an upgrade not yet migrated): not ready. Ahead of it (a revision this code does not
    know): ready, since migrations only add, so the previous release keeps working during a rolling upgrade.
    """
    try:
        current = store.schema_revision()
    except DiaristError as e:
        return {"ok": False, "error": str(e)}
    head = head_revision()
    if current == head or (current is not None and not known_revision(current)):
        return {"ok": True, "error": None}
    return {
        "ok": False,
        "error": f"The database schema is at revision {current}, this code needs {head}: run `diarist migrate`.",
    }


def broker_check(url: str) -> dict[str, Any]:
    """Whether the Celery broker accepts a connection within a few seconds."""
    try:
        from kombu import Connection
    except ImportError:
        return {"ok": False, "error": "Celery is not installed."}
    try:
        with Connection(url, connect_timeout=BROKER_TIMEOUT_SECONDS) as connection:
            connection.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT_SECONDS)
    except Exception as e:  # the message may carry the URL and its password: only the kind of failure
        return {"ok": False, "error": f"The broker does not answer ({type(e).__name__})."}
    return {"ok": True, "error": None}


class JobMetrics(Collector):
    """Job gauges and histograms, read from the database at most once per `ops_cache_seconds`: each read
    scans the window's ended jobs, which no scrape rate may multiply."""

    def __init__(self, store: Store, settings: Settings):
        self.store, self.settings = store, settings
        self.stats = Cached(self._read, settings.ops_cache_seconds)

    def _read(self) -> JobStats | None:
        """The figures, or None when the database does not answer (remembered as long, so that an
        unreachable database is not waited for at every scrape)."""
        try:
            return job_stats(self.store, timedelta(hours=self.settings.result_ttl_hours), self.settings.lease_seconds)
        except DiaristError:
            return None

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("diarist_database_up", "1 when the job database answered its last read.")
        stats = self.stats.get()
        if stats is None:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        jobs = GaugeMetricFamily("diarist_jobs", "Jobs in the database, by status.", labels=["status"])
        for status, count in stats.by_status.items():
            jobs.add_metric([status], count)
        yield jobs
        yield GaugeMetricFamily("diarist_queue_depth", "Jobs waiting for a worker.", value=stats.queue_depth)
        yield GaugeMetricFamily(
            "diarist_oldest_pending_age_seconds",
            "How long the oldest waiting job has waited (0: none waits).",
            value=stats.oldest_pending_seconds,
        )
        yield GaugeMetricFamily(
            "diarist_expired_leases",
            "Running jobs whose worker has not been heard from within the lease; the reaper re-queues them.",
            value=stats.expired_leases,
        )
        workers = GaugeMetricFamily(
            "diarist_workers", "Worker processes heard from within the lease, by kind.", labels=["kind"]
        )
        for kind, count in stats.workers.items():
            workers.add_metric([kind], count)
        yield workers
        durations = {
            status: [j.seconds for j in stats.finished if j.status == status] for status in (SUCCEEDED, FAILED)
        }
        duration = GaugeHistogramMetricFamily(
            "diarist_job_duration_seconds",
            "Run time of the last attempt of the jobs that ended within the retention window (result_ttl_hours).",
            labels=["status"],
        )
        for status, values in durations.items():
            duration.add_metric([status], buckets(values, DURATION_BUCKETS), sum(values))
        yield duration
        factors = [j.seconds / j.audio_seconds for j in stats.finished if j.status == SUCCEEDED and j.audio_seconds]
        rtf = GaugeHistogramMetricFamily(
            "diarist_job_real_time_factor",
            "Run time per second of audio of the jobs that succeeded within the retention window.",
        )
        rtf.add_metric([], buckets(factors, RTF_BUCKETS), sum(factors))
        yield rtf


def buckets(values: list[float], bounds: tuple[float, ...]) -> list[tuple[str, float]]:
    """Cumulative `(le, count)` pairs, +Inf last, as Prometheus histograms have them."""
    pairs = [(str(bound), float(sum(v <= bound for v in values))) for bound in bounds]
    return [*pairs, ("+Inf", float(len(values)))]


class RequestMetrics:
    """Times each HTTP request into a histogram by route template, method and status class, and tells
    the client in a `Server-Timing: app;dur=<ms>` header (the time to its response's start).

    Route templates (`/v1/jobs/{job_id}`), not raw paths, and a fixed set of methods keep the label
    count bounded whatever clients send. The header lets a client tell the server's time from the
    network's and its own (browsers' developer tools show it).
    """

    def __init__(self, app: ASGIApp, histogram: Histogram):
        self.app, self.histogram = app, histogram

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # an app that raises before answering
        start = time.perf_counter()

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                took = f"app;dur={(time.perf_counter() - start) * 1000:.2f}"
                message = {**message, "headers": [*message.get("headers", []), (b"server-timing", took.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope["method"] if scope["method"] in METHODS else "other"
            labels = (route, method, f"{status // 100}xx")
            self.histogram.labels(*labels).observe(time.perf_counter() - start)


class LiveMetrics(Collector):
    """This replica's open live streams and how far each lags behind its audio."""

    def __init__(self, live: LiveEngine):
        self.live = live

    def collect(self) -> Iterator[Metric]:
        open_streams = self.live.open_streams
        yield GaugeMetricFamily("diarist_live_streams", "Live streams open on this replica.", value=open_streams)
        lags = self.live.lags()
        yield GaugeMetricFamily(
            "diarist_live_max_lag_seconds",
            "The largest lag of this replica's live streams: audio received and not yet decided (0: none open).",
            value=max(lags, default=0.0),
        )


def install_metrics(app: FastAPI, store: Store, settings: Settings) -> None:
    """Give `app` its own registry (request latency and job metrics) and the middleware that times requests."""
    registry = CollectorRegistry()
    latency = Histogram(
        "diarist_http_request_duration_seconds",
        "Time to answer HTTP requests in this API process.",
        ["route", "method", "status"],
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )
    registry.register(JobMetrics(store, settings))
    registry.register(LiveMetrics(app.state.services.live))
    app.state.metrics = registry
    app.add_middleware(RequestMetrics, histogram=latency)
