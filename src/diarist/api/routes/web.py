"""The web page's routes: the page at `/`, its files under `/static/`, Swagger UI at `/docs`, and
`GET /web/vocabulary`, the names the page offers, all served from the package.

None of these needs a key: the page asks for one and sends it to the /v1 routes like any client.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

from diarist.exports import FORMATS
from diarist.jobs.kinds import KINDS
from diarist.jobs.tables import STATUSES, TERMINAL
from diarist.vocabulary import DEFAULT_MODEL, DIARIZATION_MODELS, TRANSCRIBING_MODELS

WEB_DIR = Path(__file__).parents[2] / "web"  # the page and its static files, shipped inside the package
VENDOR = "/static/vendor/swagger-ui"

# The page runs only its own scripts: a speaker name or a file name that holds markup can never
# run as code, even if a future change rendered one as HTML. Audio and uploads may go to the
# server's public_url, which can be another origin than the page's; so may the live view's socket.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; media-src 'self' http: https:; connect-src 'self' http: https: ws: wss:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
# Swagger UI starts from an inline script, so /docs cannot have the page's script policy; it can refuse to
# be framed, so that another origin cannot clickjack its Authorize and Try-it-out buttons (X-Frame-Options
# for browsers without frame-ancestors).
DOCS_HEADERS = {
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def vocabulary() -> dict[str, Any]:
    """The names the page lets a user choose from or reads, from the modules that define them.

    Names only, the same for every key: the page fills its choices from them instead of a copy.
    """
    return {
        "models": list(DIARIZATION_MODELS),
        "defaultModel": DEFAULT_MODEL,
        "transcribingModels": list(TRANSCRIBING_MODELS),
        "statuses": list(STATUSES),
        "terminalStatuses": list(TERMINAL),
        "exportFormats": list(FORMATS),
        "jobKinds": {name: {"hasSpeakers": kind.has_speakers} for name, kind in KINDS.items()},
    }


def install_web(app: FastAPI) -> None:
    """Serve the page, its files, its vocabulary and Swagger UI on `app`."""
    app.mount("/static", StaticFiles(directory=WEB_DIR / "static"), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", media_type="text/html", headers=PAGE_HEADERS)

    @app.get("/web/vocabulary", include_in_schema=False)
    def page_vocabulary() -> dict[str, Any]:
        return vocabulary()

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        html = get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} API",
            swagger_js_url=f"{VENDOR}/swagger-ui-bundle.js",
            swagger_css_url=f"{VENDOR}/swagger-ui.css",
            swagger_favicon_url=f"{VENDOR}/favicon-32x32.png",
        )
        html.headers.update(DOCS_HEADERS)
        return html
