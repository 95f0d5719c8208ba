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
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

from diarist import __version__
from diarist.api import health, ops
from diarist.api.errors import RequestIdMiddleware, install_error_handlers
from diarist.api.guard import EdgeGuard
from diarist.api.openapi import openapi_schema
from diarist.api.ratelimits import RedisRateLimiter, make_limiters
from diarist.api.routes import router
from diarist.api.services import Services
from diarist.errors import DiaristError
from diarist.jobs.background import Periodic
from diarist.jobs.media import MediaStore, signing_secret
from diarist.jobs.queue import JobQueue
from diarist.jobs.retention import expire
from diarist.jobs.store import Store
from diarist.jobs.webhooks import WebhookDispatcher
from diarist.jobs.worker import LocalWorkers, net_policy, reaper
from diarist.private_files import FILE_MODE, PRIVATE_UMASK, private_dir, warn_if_open
from diarist.settings import Settings

log = logging.getLogger("diarist.api")
API_POOL_SIZE = 10  # PostgreSQL connections of an API process: requests, webhooks, retention, scrapes
PART_TTL_SECONDS = 3600  # a half-written upload untouched this long (or the URL lifetime) was left by a crash
WEB_DIR = Path(__file__).parents[1] / "web"  # the page and its static files, shipped inside the package
VENDOR = "/static/vendor/swagger-ui"


def _lock_data_dir(data_dir: Path):
    """One server per data dir: at start it re-queues every running job, which must be its own."""
    private_dir(data_dir)
    handle = os.fdopen(os.open(data_dir / "server.lock", os.O_WRONLY | os.O_CREAT, FILE_MODE), "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise DiaristError(f"another diarist server is using {data_dir}") from None
    return handle


def create_app(settings: Settings) -> FastAPI:
    """The service on `settings`; workers and background threads start with the app's lifespan."""
    store = Store(settings.database, settings.database_busy_timeout_seconds, API_POOL_SIZE)
    media = MediaStore(settings.media_dir)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Whatever this process and its workers create (SQLite files, uploads, downloads) is private.
        os.umask(PRIVATE_UMASK)
        lock = _lock_data_dir(settings.data_dir)
        warn_if_open(settings.data_dir)
        store.migrate()
        services = app.state.services
        services.secret = signing_secret(store, settings.data_dir)
        health_reports = {}
        workers: LocalWorkers | None = None
        if settings.executor == "celery":
            from diarist.jobs.celery_app import make_celery, publisher

            publish = publisher(make_celery(settings), store)
            services.queue.publish = publish
            leases = reaper(store, settings, publish)
        else:
            if store.engine.dialect.name == "sqlite":
                # One server per SQLite file (the data dir lock): every running job was this server's.
                requeued = store.requeue_jobs(None, settings.max_attempts)
                if requeued:
                    log.info("re-queued %d jobs that were running when the server stopped", requeued)
            workers = LocalWorkers(settings, store)
            services.queue.wake = workers.notify
            health_reports["workers"] = workers.report
            leases = reaper(store, settings)
        dispatcher = WebhookDispatcher(
            store, services.policy, settings.webhook_timeout, settings.webhook_retry_delays, settings.webhook_threads
        )
        sweep = partial(
            expire,
            store=store,
            media=media,
            downloads=settings.downloads_dir,
            result_ttl=timedelta(hours=settings.result_ttl_hours),
            media_ttl=timedelta(hours=settings.media_ttl_hours),
            part_ttl=timedelta(seconds=max(settings.upload_url_ttl_seconds, PART_TTL_SECONDS)),
        )
        janitor = Periodic("retention-sweep", settings.janitor_interval_seconds, sweep)
        app.state.health_reports = {
            **health_reports,
            "reaper": leases.report,
            "webhooks": dispatcher.report,
            "retention": janitor.report,
        }
        if isinstance(services.limiter, RedisRateLimiter):
            app.state.health_reports["rateLimits"] = services.limiter.report
        if workers is not None:
            workers.start()
        leases.start()
        dispatcher.start()
        janitor.start()
        try:
            yield
        finally:
            if workers is not None:
                workers.stop()
            leases.stop()
            dispatcher.stop()
            janitor.stop()
            store.close()
            lock.close()

    app = FastAPI(
        title="diarist",
        version=__version__,
        summary="Self-hosted speaker diarization with the pyannoteAI API",
        lifespan=lifespan,
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
        queue=JobQueue(store),
        policy=net_policy(settings),
        limiter=limiter,
        failures=failures,
    )
    app.state.health_reports = {}
    app.add_middleware(RequestIdMiddleware)
    ops.install_metrics(app, store, settings)  # outermost: a request's time includes every middleware
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(ops.router)
    app.include_router(router)
    install_web(app)
    app.openapi = partial(openapi_schema, app)  # type: ignore[method-assign]
    return app


# The page runs only its own scripts: a speaker name or a file name that holds markup can never
# run as code, even if a future change rendered one as HTML. Audio and uploads may go to the
# server's public_url, which can be another origin than the page's.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; media-src 'self' http: https:; connect-src 'self' http: https:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def install_web(app: FastAPI) -> None:
    """The web page at `/`, its files under `/static/`, and Swagger UI at `/docs`, all from the package.

    None of these needs a key: the page asks for one and sends it to the /v1 routes like any client.
    """
    app.mount("/static", StaticFiles(directory=WEB_DIR / "static"), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", media_type="text/html", headers=PAGE_HEADERS)

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} API",
            swagger_js_url=f"{VENDOR}/swagger-ui-bundle.js",
            swagger_css_url=f"{VENDOR}/swagger-ui.css",
            swagger_favicon_url=f"{VENDOR}/favicon-32x32.png",
        )
