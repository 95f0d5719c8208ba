"""The transport edge against a live `diarist serve`: keys before bodies, body and header limits,
timeouts, connection caps, error shapes for what never reaches a route, keep-alive after errors."""

from __future__ import annotations

import contextlib
import gzip
import http.client
import json
import resource
import select
import socket
import sqlite3
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from diarist.settings import Settings

from .live import LiveServer, create_key

# Short limits, so each one can be crossed within a test.
EDGE_ENV = {
    "DIARIST_HEADER_TIMEOUT": "2",
    "DIARIST_BODY_IDLE_TIMEOUT": "3",  # longer than the rate window: the trickle test meets the rate
    "DIARIST_BODY_RATE_WINDOW": "2",
    "DIARIST_MAX_CONNECTIONS": "120",
    "DIARIST_MAX_CONNECTIONS_PER_IP": "50",
    "DIARIST_AUTH_FAILURES_PER_MINUTE": "5",
}
# Loopback source addresses, one per test that sends requests without a valid key, so the per-address
# limit on failed keys counts each test's requests alone.
SLOW_CLIENT = "127.0.0.3"


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    """A server with EDGE_ENV, started with a soft open-files limit below the hard one, as many systems do."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 1024), hard))  # the server inherits it
    try:
        live = LiveServer(tmp_path_factory.mktemp("edge"), env=EDGE_ENV, workers=0).start()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    yield live
    live.stop()


@pytest.fixture(scope="module")
def edge_key(edge):
    return create_key(edge.data_dir, "edge", "--rate-limit", "1000")


def client_from(server: LiveServer, address: str, key=None) -> httpx.Client:
    """An HTTP client whose connections leave from `address` (any 127.x.y.z reaches the server)."""
    headers = {"Authorization": f"Bearer {key.key}"} if key else {}
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=server.url, headers=headers, transport=transport, timeout=30)


def raw_connection(server: LiveServer, address: str = "127.0.0.1") -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10, source_address=(address, 0))


def read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    """All the server sends until it closes the connection; fails if it is still open after `timeout` s."""
    deadline = time.monotonic() + timeout
    data = b""
    with sock:
        while True:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                return data
            except TimeoutError:
                raise AssertionError(f"the server kept the connection open for {timeout} s") from None
            if not chunk:
                return data
            data += chunk


def parse_response(data: bytes) -> tuple[int, dict[str, str], dict]:
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode().split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, json.loads(body)


def assert_api_error(status: int, headers: dict[str, str], body: dict) -> None:
    assert set(body) == {"requestId", "message"}, body
    assert body["requestId"] == headers["x-request-id"]


def proc_line(pid: int, name: str, prefix: str) -> str:
    """The line of /proc/<pid>/<name> that starts with `prefix`."""
    lines = Path(f"/proc/{pid}/{name}").read_text().splitlines()
    return next(line for line in lines if line.startswith(prefix))


def peak_rss_kib(pid: int) -> int:
    return int(proc_line(pid, "status", "VmHWM:").split()[1])


def test_open_files_limit_is_raised_to_the_hard_limit(edge):
    soft, hard = proc_line(edge.process.pid, "limits", "Max open files").split()[3:5]
    assert soft == hard


def test_key_is_checked_before_the_body_is_read(edge):
    pid = edge.process.pid
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets the peak resident set size (VmHWM) to the current one
    before = peak_rss_kib(pid)
    with client_from(edge, "127.0.0.7") as stranger:
        body = b'{"url": "media://x", "pad": "' + b"x" * (50 * 1024**2) + b'"}'  # valid JSON, 50 MB
        refused = stranger.post("/v1/diarize", content=body, headers={"Content-Type": "application/json"})
    assert refused.status_code == 401
    assert_api_error(refused.status_code, dict(refused.headers), refused.json())
    assert peak_rss_kib(pid) - before < 8 * 1024


def test_json_bodies_are_capped(edge, edge_key):
    limit = Settings.model_fields["max_json_bytes"].default
    oversized = b'{"url": "media://x", "pad": "' + b" " * limit + b'"}'
    with edge.client(edge_key) as api:
        declared = api.post("/v1/diarize", content=oversized, headers={"Content-Type": "application/json"})
        chunked = api.post("/v1/diarize", content=iter([oversized[:1000], oversized[1000:]]))
    for response in (declared, chunked):
        assert response.status_code == 413, response.text
        assert_api_error(response.status_code, dict(response.headers), response.json())
    assert "transfer-encoding" in chunked.request.headers


def test_half_sent_headers_are_cut_off_and_capped_per_address(edge, edge_key):
    attackers = []
    for _ in range(200):
        sock = raw_connection(edge, SLOW_CLIENT)
        with contextlib.suppress(OSError):  # connections over the per-address cap may be closed already
            sock.sendall(b"GET /v1/te")
        attackers.append(sock)
    with edge.client(edge_key) as api:
        assert api.get("/v1/test").status_code == 200
    answers = [read_until_closed(sock, timeout=20) for sock in attackers]
    timed_out = [parse_response(a) for a in answers if a]
    assert len(timed_out) == 50  # DIARIST_MAX_CONNECTIONS_PER_IP: the others were closed at once, unanswered
    for status, headers, body in timed_out:
        assert status == 408
        assert_api_error(status, headers, body)


@pytest.mark.slow
def test_connections_over_the_total_cap_are_closed_at_once(edge):
    time.sleep(0.5)  # the server has seen every earlier test's connection close
    opened = []
    for address in ("127.0.0.9", "127.0.0.10", "127.0.0.11"):  # 50 each: within the per-address cap
        for _ in range(50):
            sock = raw_connection(edge, address)
            with contextlib.suppress(OSError):
                sock.sendall(b"GET /v1/te")
            opened.append(sock)
    answered = [bool(read_until_closed(sock, timeout=20)) for sock in opened]
    assert answered == [True] * 120 + [False] * 30  # DIARIST_MAX_CONNECTIONS; the 408 came to those let in


def upload_path(edge, edge_key) -> str:
    with edge.client(edge_key) as api:
        target = api.post("/v1/media/input", json={"url": "media://slow.wav"})
    return urlsplit(target.json()["url"]).path


def start_upload(edge, path: str, body: bytes) -> socket.socket:
    sock = raw_connection(edge)
    sock.sendall(f"PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n".encode() + body)
    return sock


def test_trickling_upload_is_cut_off(edge, edge_key):
    sock = start_upload(edge, upload_path(edge, edge_key), b"")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not select.select([sock], [], [], 0.2)[0]:
        with contextlib.suppress(OSError):  # the server may have just answered and closed
            sock.sendall(b"x")  # 5 bytes/s, far below the 1 KiB/s minimum
    status, headers, body = parse_response(read_until_closed(sock, timeout=5))
    assert status == 408
    assert_api_error(status, headers, body)
    assert "slower than 1024 bytes/s" in body["message"]


@pytest.mark.slow
def test_stalled_upload_is_cut_off(edge, edge_key):
    sock = start_upload(edge, upload_path(edge, edge_key), b"x" * 10)
    status, headers, body = parse_response(read_until_closed(sock, timeout=20))
    assert status == 408
    assert_api_error(status, headers, body)
    assert "stopped arriving" in body["message"]


def test_oversized_headers_are_refused(edge):
    sock = raw_connection(edge)
    with contextlib.suppress(OSError):
        sock.sendall(b"GET /v1/test HTTP/1.1\r\nX-Padding: " + b"a" * 100_000)
    status, headers, body = parse_response(read_until_closed(sock, timeout=20))
    assert status == 431
    assert_api_error(status, headers, body)


def test_malformed_http_gets_a_400_in_the_api_shape(edge):
    sock = raw_connection(edge)
    sock.sendall(b"GARBAGE\r\n\r\n")
    status, headers, body = parse_response(read_until_closed(sock, timeout=20))
    assert status == 400
    assert body["errors"] == [{"field": "request", "message": "Malformed HTTP request"}]
    assert body["requestId"] == headers["x-request-id"]


def test_failed_keys_are_rate_limited_per_address(edge, edge_key):
    with client_from(edge, "127.0.0.6") as guesser:
        answers = [guesser.get("/v1/test", headers={"Authorization": f"Bearer dia_x_{i}"}) for i in range(6)]
        valid_key_too = guesser.get("/v1/test", headers={"Authorization": f"Bearer {edge_key.key}"})
    assert [a.status_code for a in answers] == [401] * 5 + [429]  # DIARIST_AUTH_FAILURES_PER_MINUTE
    for blocked in (answers[-1], valid_key_too):
        assert blocked.status_code == 429
        assert_api_error(blocked.status_code, dict(blocked.headers), blocked.json())
        assert 1 <= int(blocked.headers["retry-after"]) <= 60
    with client_from(edge, "127.0.0.8") as other:
        assert other.get("/v1/test").status_code == 401


@pytest.mark.slow
def test_forwarded_for_counts_only_from_a_trusted_proxy(tmp_path):
    """A local client's X-Forwarded-For neither dodges the failed-key limit nor blocks another address."""
    proxy, victim = "127.0.0.11", "127.0.0.13"
    env = {"DIARIST_AUTH_FAILURES_PER_MINUTE": "5", "DIARIST_TRUSTED_PROXIES": proxy}
    live = LiveServer(tmp_path / "proxies", env=env, workers=0).start()
    try:
        key = create_key(live.data_dir, "victim")
        # From 127.0.0.1, which uvicorn trusts by default: every failure blames the victim's address.
        with live.client(None) as spoofer:
            blamed = [spoofer.get("/v1/test", headers=bad_key(i) | {"X-Forwarded-For": victim}) for i in range(6)]
            dodging = spoofer.get("/v1/test", headers=bad_key(6) | {"X-Forwarded-For": "127.0.0.14"})
        with client_from(live, victim, key) as innocent:
            innocent_answer = innocent.get("/v1/test")
        # The operator's proxy is trusted: each forwarded client is counted apart.
        with client_from(live, proxy) as behind_proxy:
            forwarded = [
                behind_proxy.get("/v1/test", headers=bad_key(i) | {"X-Forwarded-For": f"10.0.0.{i}"}) for i in range(6)
            ]
    finally:
        live.stop()
    assert [a.status_code for a in blamed] == [401] * 5 + [429]
    assert dodging.status_code == 429  # the limit follows the real address, whatever the header says
    assert innocent_answer.status_code == 200
    assert [a.status_code for a in forwarded] == [401] * 6


def bad_key(number: int) -> dict[str, str]:
    return {"Authorization": f"Bearer dia_x_{number}"}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/v1/media/upload/x/"),
        ("PUT", "/v1/media/upload/%2e%2e%2f"),
        ("GET", "/v1/test/"),
        ("GET", "/v1/jobs/"),
    ],
)
def test_a_trailing_slash_is_not_redirected(edge, edge_key, method, path):
    """Starlette would answer 307 with an empty body (and `%2e%2e%2f` would send a client to `upload/..`)."""
    with edge.client(edge_key) as api:
        answer = api.request(method, path, content=b"x" if method == "PUT" else None)
    assert answer.status_code == 404, answer.text
    assert_api_error(answer.status_code, dict(answer.headers), answer.json())


def test_rate_limit_headers_on_every_authenticated_response(edge, edge_key):
    with edge.client(edge_key) as api:
        answers = [
            api.get("/v1/test"),
            api.get("/v1/jobs/00000000-0000-0000-0000-000000000000"),
            api.post("/v1/diarize", json={}),
            api.post("/v1/diarize", content=b"x" * (Settings.model_fields["max_json_bytes"].default + 1)),
        ]
    assert [a.status_code for a in answers] == [200, 404, 400, 413]
    for answer in answers:
        assert answer.headers["x-ratelimit-limit"] == "1000"
        assert int(answer.headers["x-ratelimit-remaining"]) < 1000


def exchange(connection: http.client.HTTPConnection, method: str, path: str, key, body: dict | None = None):
    headers = {"Authorization": f"Bearer {key.key}", "Content-Type": "application/json"}
    connection.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    response = connection.getresponse()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, json.loads(response.read())


def test_connection_stays_usable_after_a_server_error(edge, edge_key):
    database = sqlite3.connect(edge.data_dir / "diarist.db")
    connection = http.client.HTTPConnection("127.0.0.1", edge.port, timeout=30)
    try:
        database.execute("ALTER TABLE media RENAME TO media_away")  # a broken database: a genuine 500
        database.commit()
        status, headers, body = exchange(connection, "POST", "/v1/media/output", edge_key, {"url": "media://a"})
        assert status == 500
        assert_api_error(status, headers, body)
        assert "connection" not in headers
        opened = connection.sock
        assert exchange(connection, "GET", "/v1/test", edge_key)[0] == 200
        assert connection.sock is opened
    finally:
        database.execute("ALTER TABLE media_away RENAME TO media")
        database.commit()
        database.close()
        connection.close()


def test_integer_overflow_is_a_400_on_a_kept_connection(edge, edge_key):
    connection = http.client.HTTPConnection("127.0.0.1", edge.port, timeout=30)
    with contextlib.closing(connection):
        status, _, body = exchange(connection, "GET", f"/v1/jobs?skip={2**63}", edge_key)
        assert status == 400
        assert [e["field"] for e in body["errors"]] == ["skip"]
        opened = connection.sock
        assert exchange(connection, "GET", "/v1/test", edge_key)[0] == 200
        assert connection.sock is opened


@pytest.mark.parametrize(
    "body, content_type",
    [
        (b'{"url": "media://\xff\xfe"}', "application/json"),  # not UTF-8
        (b'{"url": "media://x", "numSpeakers": ' + b"9" * 5000 + b"}", "application/json"),
        (b"[" * 5000 + b"]" * 5000, "application/json"),
        (gzip.compress(b'{"url": "media://x"}'), "application/json"),
        (b"\x89PNG\r\n\x1a\n" + bytes(range(256)), None),  # binary, sent without a Content-Type
    ],
    ids=["invalid-utf8", "5000-digits", "deep-nesting", "gzip", "binary"],
)
def test_undecodable_bodies_are_400_with_errors(api, body, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    answer = api.post("/v1/diarize", content=body, headers=headers)
    assert answer.status_code == 400, answer.text
    assert answer.json()["message"] == "Invalid request"
    assert [e["field"] for e in answer.json()["errors"]] == ["body"]
    assert answer.json()["requestId"] == answer.headers["x-request-id"]


def test_the_access_log_hides_the_tokens_of_pre_signed_urls(tmp_path):
    """A pre-signed URL is its own permission: the log of its request names the route, not the token."""
    key = create_key(tmp_path / "state", "logged", "--rate-limit", "0")
    live = LiveServer(tmp_path / "state", env={"DIARIST_ACCESS_LOG": "true"}, workers=0).start()
    try:
        with live.client(key) as api:
            target = api.post("/v1/media/input", json={"url": "media://logged.wav"}).json()["url"]
            assert httpx.put(target, content=b"audio").status_code == 200
            link = api.post("/v1/media/output", json={"url": "media://logged.wav"}).json()["url"]
            assert httpx.get(link).content == b"audio"
    finally:
        live.stop()
    log = live.log()
    for url in (target, link):
        assert urlsplit(url).path.rsplit("/", 1)[1] not in log
    assert '"PUT /v1/media/upload/*** HTTP/1.1" 200' in log and '"GET /v1/media/download/*** HTTP/1.1" 200' in log


def test_serve_freezes_what_exists_before_serving(tmp_path, monkeypatch):
    """The objects made at startup are kept out of the collector: a full collection scanning them all
    paused every request in flight (issue 22, docs/benchmarks.md)."""
    import gc
    import sys

    from diarist.api import server

    frozen: list[int] = []
    monkeypatch.setattr(server.uvicorn, "run", lambda app, **kw: frozen.append(gc.get_freeze_count()))
    interval = sys.getswitchinterval()
    try:
        server.serve(Settings(data_dir=tmp_path, workers=0))
    finally:
        gc.unfreeze()
        sys.setswitchinterval(interval)
    assert frozen and frozen[0] > 10_000
