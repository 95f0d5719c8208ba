"""Run the app under uvicorn with the transport limits the service relies on.

uvicorn's httptools protocol times out only idle keep-alive connections: a client that opens a
connection and never finishes its headers holds it (and a file descriptor) forever, and headers are
buffered without a size limit. `GuardedHttpProtocol` adds a header timeout, a header size limit and
caps on connections, and answers malformed requests in the API's error shape.
"""

from __future__ import annotations

import gc
import json
import logging
import re
import resource
import sys
import uuid
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from diarist.api.app import create_app
from diarist.api.errors import REQUEST_ID_HEADER, error_body, invalid_body
from diarist.settings import Settings

log = logging.getLogger("diarist.api")
# The secrets a request line can carry: a pre-signed media URL's token, a live socket's ?token=.
_TOKENS = re.compile(r"(?P<kept>/v1/media/(?:upload|download)/|[?&]token=)[^/?&\s]+")


class RedactTokens(logging.Filter):
    """Hide the tokens in uvicorn's request lines (the access log, a socket's handshake): whoever reads
    the log could otherwise fetch or overwrite another key's upload until its URL expires."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_TOKENS.sub(r"\g<kept>***", a) if isinstance(a, str) else a for a in record.args)
        return True


# How long a thread may hold the GIL while another waits for it (Python's default: 5 ms). Each of the
# SQLite write's calls lets the GIL go; getting it back could take that long per call while the
# process's one write lock was held, and every waiting submit, and the event loop, waited behind it.
GIL_SWITCH_SECONDS = 0.001


@dataclass
class ConnectionLimits:
    """Shared by every connection of one server."""

    max_connections: int
    max_per_address: int
    header_timeout: float
    max_header_bytes: int
    per_address: Counter[str] = field(default_factory=Counter)  # open connections by client address


class GuardedHttpProtocol(HttpToolsProtocol):
    """One connection: refused over the caps; closed when a request's headers are late or too large."""

    def __init__(self, *args: Any, limits: ConnectionLimits, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.limits = limits
        self.address: str | None = None  # set while this connection counts in limits.per_address
        self.header_timer: Any = None  # armed while waiting for a request's headers
        self.header_bytes = 0  # bytes of the request being waited for, all of them headers so far

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        address = self.client[0] if self.client else ""
        limits = self.limits
        if len(self.connections) > limits.max_connections or limits.per_address[address] >= limits.max_per_address:
            transport.close()  # at once, so an attacker's connections cost no file descriptors
            return
        limits.per_address[address] += 1
        self.address = address
        self._await_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        if self.address is not None:
            self.limits.per_address[self.address] -= 1
            if not self.limits.per_address[self.address]:
                del self.limits.per_address[self.address]
            self.address = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.header_timer is not None:
            self.header_bytes += len(data)
        super().data_received(data)
        # Still waiting after the parser saw these bytes: every one of them belongs to the headers.
        if self.header_timer is not None and self.header_bytes > self.limits.max_header_bytes:
            message = f"The request line and headers are larger than {self.limits.max_header_bytes} bytes."
            self._answer_and_close(431, lambda rid: error_body(rid, message))

    def on_headers_complete(self) -> None:
        self._stop_header_timer()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.cycle.response_complete:  # no pipelined request started
            self._await_headers()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to bytes that are not HTTP; in the API's 400 shape here."""
        problem = [("request", "Malformed HTTP request")]
        self._answer_and_close(400, lambda rid: invalid_body(rid, problem))

    def _await_headers(self) -> None:
        self._stop_header_timer()
        self.header_bytes = 0
        self.header_timer = self.loop.call_later(self.limits.header_timeout, self._headers_late)

    def _stop_header_timer(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None

    def _headers_late(self) -> None:
        self.header_timer = None
        if not self.header_bytes:  # nothing of a request arrived: a quiet close, as for an idle keep-alive
            self.transport.close()
            return
        message = f"The request headers did not arrive within {self.limits.header_timeout:g} s."
        self._answer_and_close(408, lambda rid: error_body(rid, message))

    def _answer_and_close(self, status: int, body: Any) -> None:
        """Write a JSON error (body: request id -> dict) with its request id, and close the connection."""
        if self.transport.is_closing():
            return
        self._stop_header_timer()
        rid = str(uuid.uuid4())
        content = json.dumps(body(rid)).encode()
        headers = [
            *self.server_state.default_headers,
            (b"content-type", b"application/json"),
            (b"content-length", str(len(content)).encode()),
            (REQUEST_ID_HEADER.lower().encode(), rid.encode()),
            (b"connection", b"close"),
        ]
        head = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
        self.transport.write(STATUS_LINE[status] + head + b"\r\n" + content)
        self.transport.close()


def raise_open_files_limit() -> int:
    """Lift the soft limit on open files to the hard one, as many connections need; returns the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as e:  # an unlimited hard limit cannot be a soft one on Linux
            log.warning("could not raise the open files limit from %d: %s", soft, e)
    return soft


def serve(settings: Settings) -> None:
    """Serve the API on `settings.host:settings.port` until interrupted."""
    sys.setswitchinterval(GIL_SWITCH_SECONDS)
    open_files = raise_open_files_limit()
    if open_files != resource.RLIM_INFINITY and settings.max_connections > open_files - 100:
        log.warning("max_connections %d is near the open files limit %d", settings.max_connections, open_files)
    for name in ("uvicorn.access", "uvicorn.error"):
        logging.getLogger(name).addFilter(RedactTokens())
    limits = ConnectionLimits(
        max_connections=settings.max_connections,
        max_per_address=settings.max_connections_per_ip,
        header_timeout=settings.header_timeout,
        max_header_bytes=settings.max_header_bytes,
    )
    app = create_app(settings)
    # What exists now (the imports, the app) lives as long as the process. A full collection scanned
    # all of it, about 130k objects: a pause of 30-100 ms for every request in flight, twice a
    # minute at 90 req/s. Frozen, the collector skips it.
    gc.collect()
    gc.freeze()
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level="info",
        access_log=settings.access_log,
        loop="uvloop",
        http=partial(GuardedHttpProtocol, limits=limits),  # type: ignore[arg-type]
        ws="websockets-sansio",  # the live streams' sockets (api/routes/live.py)
        ws_max_size=65536,  # a live frame is 6400 bytes; nothing a client sends needs more
        timeout_keep_alive=settings.keep_alive_timeout,
        # uvicorn would trust X-Forwarded-For from 127.0.0.1, the address every local client has.
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=settings.trusted_proxies or None,
    )
