"""What the routes work with, made once per app and handed over as a FastAPI dependency."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request

from diarist.api.auth import KeyCache, Limiter, RateLimiter
from diarist.jobs.live import LiveEngine
from diarist.jobs.media import MediaStore, UploadsInFlight
from diarist.jobs.queue import JobQueue
from diarist.jobs.store import Store
from diarist.net import NetPolicy
from diarist.settings import Settings


@dataclass
class Services:
    settings: Settings
    store: Store
    media: MediaStore
    queue: JobQueue
    policy: NetPolicy
    keys: KeyCache  # what admits a request's key
    limiter: Limiter = field(default_factory=RateLimiter)  # per API key
    failures: Limiter = field(default_factory=RateLimiter)  # requests without a valid key, per client address
    uploads: UploadsInFlight = field(default_factory=UploadsInFlight)
    live: LiveEngine = field(default_factory=lambda: LiveEngine(threads=1))  # this replica's live streams
    # Signs the upload and download URLs; read from the database at startup, once it is migrated.
    secret: bytes = b""


async def services(request: Request) -> Services:
    return request.app.state.services
