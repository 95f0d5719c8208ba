"""What the routes work with, made once per app and handed over as a FastAPI dependency."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request

from diarist.api.auth import RateLimiter
from diarist.jobs.media import MediaStore, UploadsInFlight
from diarist.jobs.net import NetPolicy
from diarist.jobs.queue import JobQueue
from diarist.jobs.store import Store
from diarist.settings import Settings


@dataclass
class Services:
    settings: Settings
    store: Store
    media: MediaStore
    queue: JobQueue
    policy: NetPolicy
    secret: bytes  # signs the upload and download URLs
    limiter: RateLimiter = field(default_factory=RateLimiter)
    uploads: UploadsInFlight = field(default_factory=UploadsInFlight)


def services(request: Request) -> Services:
    return request.app.state.services
