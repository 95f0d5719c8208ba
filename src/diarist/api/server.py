"""Run the app under uvicorn with the transport settings the service relies on."""

from __future__ import annotations

import uvicorn

from diarist.api.app import create_app
from diarist.settings import Settings


def serve(settings: Settings) -> None:
    """Serve the API on `settings.host:settings.port` until interrupted."""
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="info",
        access_log=settings.access_log,
        loop="uvloop",
        http="httptools",
    )
