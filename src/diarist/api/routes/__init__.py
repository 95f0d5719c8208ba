"""The HTTP routes, one module per resource; each translates HTTP into a call and the answer back.

`jobs` (submit, read, cancel, list), `live` (streams and their WebSocket), `outputs` (peaks,
speaker names, exports) and `media` (pre-signed uploads and downloads) add theirs to
`base.router`; `health` and `ops` (probes and metrics for operators) have their own, outside the
API's OpenAPI document.
"""

from diarist.api.routes import health, jobs, live, media, ops, outputs
from diarist.api.routes.base import router

__all__ = ["health", "jobs", "live", "media", "ops", "outputs", "router"]
