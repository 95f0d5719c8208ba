"""The FastAPI app and what runs beside it: local workers (or a Celery publisher), the lease
reaper, webhook dispatcher, retention janitor."""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from functools import partial
from pathlib import Path

from fastapi import FastAPI

from diarist import __version__
from diarist.api.auth import KeyCache
from diarist.api.errors import RequestIdMiddleware, install_error_handlers
from diarist.api.guard import EdgeGuard
from diarist.api.openapi import openapi_schema
from diarist.api.ratelimits import RedisRateLimiter, make_limiters
from diarist.api.routes import health, ops, router
from diarist.api.routes.live import replica_name
from diarist.api.routes.web import install_web
from diarist.api.services import Services
from diarist.errors import DiaristError
from diarist.jobs.background import Periodic
from diarist.jobs.executors import Executor, make_executor
from diarist.jobs.live import LiveEngine
from diarist.jobs.media import MediaStore, signing_secret
from diarist.jobs.queue import JobQueue
from diarist.jobs.retention import expire
from diarist.jobs.store import Store
from diarist.jobs.tables import utcnow
from diarist.jobs.webhooks import WebhookDispatcher
from diarist.jobs.worker import net_policy
from diarist.private_files import FILE_MODE, PRIVATE_UMASK, private_dir, warn_if_open
from diarist.settings import Settings

log = logging.getLogger("diarist.api")
API_POOL_SIZE = 10  # PostgreSQL connections of an API process: requests, webhooks, retention, scrapes
LIVE_REAPER_SECONDS = 15.0  # how often streams whose replica stopped refreshing them are ended
LIVE_STALE_AFTER = timedelta(seconds=60)  # a running stream refreshes its record every 5 s
# How often the WAL is copied back into an SQLite database (`Store.checkpoint`): about 300 pages at 50 submits/s.
CHECKPOINT_SECONDS = 1.0
PART_TTL_SECONDS = 3600  # a half-written upload untouched this long (or the URL lifetime) was left by a crash


def lock_data_dir(data_dir: Path):
    """One server per data dir: at start it re-queues every running job, which must be its own."""
    private_dir(data_dir)
    handle = os.fdopen(os.open(data_dir / "server.lock", os.O_WRONLY | os.O_CREAT, FILE_MODE), "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise DiaristError(f"another diarist server is using {data_dir}") from None
    return handle


def _retention(settings: Settings, store: Store, media: MediaStore) -> Periodic:
    """The loop that deletes expired outputs and uploads, and downloads and uploads left half-done."""
    sweep = partial(
        expire,
        store=store,
        media=media,
        downloads=settings.downloads_dir,
        result_ttl=timedelta(hours=settings.result_ttl_hours),
        media_ttl=timedelta(hours=settings.media_ttl_hours),
        part_ttl=timedelta(seconds=max(settings.upload_url_ttl_seconds, PART_TTL_SECONDS)),
    )
    return Periodic("retention-sweep", settings.janitor_interval_seconds, sweep)


def _lifespan(settings: Settings, store: Store, media: MediaStore, executor: Executor):
    """What runs beside the app while it serves: the executor, webhook delivery and retention."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Whatever this process and its workers create (SQLite files, uploads, downloads) is private.
        os.umask(PRIVATE_UMASK)
        lock = lock_data_dir(settings.data_dir)
        warn_if_open(settings.data_dir)
        store.migrate()
        services = app.state.services
        services.secret = signing_secret(store, settings.data_dir)
        dispatcher = WebhookDispatcher(
            store, services.policy, settings.webhook_timeout, settings.webhook_retry_delays, settings.webhook_threads
        )
        janitor = _retention(settings, store, media)
        # Streams this replica ran before it restarted are over; those of a replica gone for good, the reaper ends.
        store.fail_stale_streams(utcnow(), replica=replica_name(services))
        live_reaper = Periodic(
            "live-reaper", LIVE_REAPER_SECONDS, lambda: store.fail_stale_streams(utcnow() - LIVE_STALE_AFTER)
        )
        app.state.health_reports = {
            **executor.reports(),
            "webhooks": dispatcher.report,
            "retention": janitor.report,
            "liveReaper": live_reaper.report,
        }
        if isinstance(services.limiter, RedisRateLimiter):
            app.state.health_reports["rateLimits"] = services.limiter.report
        checkpoints = Periodic("wal-checkpoint", CHECKPOINT_SECONDS, store.checkpoint) if store.sqlite else None
        if checkpoints is not None:
            app.state.health_reports["walCheckpoint"] = checkpoints.report
            checkpoints.start()
        executor.start()
        dispatcher.start()
        janitor.start()
        live_reaper.start()
        try:
            yield
        finally:
            live_reaper.stop()
            services.live.stop()
            executor.stop()
            dispatcher.stop()
            janitor.stop()
            if checkpoints is not None:
                checkpoints.stop()
            store.close()
            lock.close()

    return lifespan


def create_app(settings: Settings) -> FastAPI:
    """The service on `settings`; workers and background threads start with the app's lifespan."""
    # On SQLite, a thread of this process copies the WAL back, not the request whose commit fills it.
    store = Store(settings.database, settings.database_busy_timeout_seconds, API_POOL_SIZE, own_checkpoints=True)
    media = MediaStore(settings.media_dir)
    executor = make_executor(settings, store)
    app = FastAPI(
        title="diarist",
        version=__version__,
        summary="Self-hosted speaker diarization with the pyannoteAI API",
        lifespan=_lifespan(settings, store, media, executor),
        strict_content_type=False,  # keys travel in headers, not cookies: no CSRF to guard against
        redirect_slashes=False,  # `/v1/test/` is a 404, not a 307 with an empty body to an unchecked path
        docs_url=None,  # served by install_web from files inside the package: /docs works offline
        redoc_url=None,  # ReDoc would load its script from a CDN; /docs covers the same document
    )
    app.add_middleware(EdgeGuard)  # added before RequestIdMiddleware, so inside it: its answers get ids too
    limiter, failures = make_limiters(settings)
    app.state.services = Services(
        settings=settings,
        store=store,
        media=media,
        queue=JobQueue(store, executor),
        policy=net_policy(settings),
        keys=KeyCache(store, settings.key_cache_seconds),
        limiter=limiter,
        failures=failures,
        live=LiveEngine(settings.live_threads, settings.device),
    )
    app.state.health_reports = {}
    app.state.database_check = health.Cached(partial(health.database_check, store), settings.ops_cache_seconds)
    app.add_middleware(RequestIdMiddleware)
    ops.install_metrics(app, store, settings)  # outermost: a request's time includes every middleware
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(ops.router)
    app.include_router(router)
    install_web(app)
    app.openapi = partial(openapi_schema, app)  # type: ignore[method-assign]
    return app
