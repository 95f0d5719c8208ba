"""diarist.net against real HTTP servers on 127.0.0.1: address checks, downloads, redirects and webhook POSTs."""

from __future__ import annotations

import base64
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from diarist.net import FetchError, NetPolicy, PostResult, UrlRefused, check_url, download, post, redact_url

LOCAL = NetPolicy(allowed_hosts=("127.0.0.1",))
DATA = bytes(range(256)) * 1000  # 256 000 bytes, every byte value

Route = Callable[[BaseHTTPRequestHandler], None]


@dataclass
class Seen:
    method: str
    path: str
    headers: Message  # case-insensitive, as header names are
    body: bytes


@dataclass
class Server:
    """A test HTTP server: routes by exact path, records every request and counts TCP connections."""

    port: int = 0
    routes: dict[str, Route] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    connections: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # teardown must not wait for a handler still sleeping
    owner: Server

    def verify_request(self, request, client_address) -> bool:
        self.owner.connections += 1
        return True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def _handle(self) -> None:
        owner = self.server.owner
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        owner.seen.append(Seen(self.command, self.path, self.headers, body))
        route = owner.routes.get(self.path, lambda h: reply(h, 404, b"not here"))
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up on purpose
            route(self)

    do_GET = do_POST = _handle

    def log_message(self, format: str, *args: object) -> None:
        pass


def reply(handler: BaseHTTPRequestHandler, status: int, body: bytes = b"", **headers: str) -> None:
    handler.send_response(status)
    for name, value in headers.items():
        handler.send_header(name.replace("_", "-"), value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def redirect(status: int, location: str) -> Route:
    return lambda h: reply(h, status, Location=location)


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server()
    httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
    httpd.owner = state
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    state.stop.set()
    httpd.shutdown()
    httpd.server_close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- check_url ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1/", "127.0.0.1 is a loopback address"),
        ("http://10.0.0.1/x", "10.0.0.1 is a private address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
        ("http://[::1]:8080/", "::1 is a loopback address"),
        ("http://[::ffff:10.0.0.1]/", "::ffff:10.0.0.1 is a private address"),
        ("http://0.0.0.0/", "0.0.0.0 is an unspecified address"),
        ("http://[::]/", ":: is an unspecified address"),
        ("http://100.64.0.1/", "100.64.0.1 is a carrier-grade NAT address"),
        ("http://172.16.5.4/", "private"),
        ("http://192.168.1.1/", "private"),
        ("http://[fd12::1]/", "private"),
        ("http://[fe80::1]/", "link-local"),
        ("http://224.0.0.1/", "multicast"),
        ("http://[ff02::1]/", "multicast"),
        ("http://240.0.0.1/", "reserved"),
        ("http://[64:ff9b::a9fe:a9fe]/", "link-local"),  # NAT64 form of 169.254.169.254
        ("http://[64:ff9b:1::a00:1]/", "a local-use NAT64 address"),  # RFC 8215 form of 10.0.0.1
        ("http://[64:ff9b:1:ffff::8.8.8.8]/", "a local-use NAT64 address"),  # the whole /48, whatever it wraps
        ("http://[2002:a00:1::]/", "private"),  # 6to4 form of 10.0.0.1
        ("http://[::ffff:0:127.0.0.1]/", "loopback"),  # IPv4-translated (::ffff:0:0:0/96) forms
        ("http://[::ffff:0:a9fe:a9fe]/", "link-local"),
        ("http://[::ffff:0:8.8.8.8]/", "a reserved address"),  # deprecated, as ::8.8.8.8 is
        ("http://[::1:0:0:8.8.8.8]/", "a reserved address"),  # the rest of ::/8
        ("http://localhost:8000/", "localhost resolves to 127.0.0.1, a loopback address"),
        ("http://127.1/", "loopback"),  # short and decimal forms the resolver accepts
        ("http://2130706433/", "loopback"),
    ],
)
def test_check_url_refuses_addresses_that_are_not_public(url: str, why: str) -> None:
    with pytest.raises(UrlRefused, match="URL refused") as info:
        check_url(url, NetPolicy())
    assert why in str(info.value)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/a.wav", "URL must start with http:// or https://"),
        ("file:///etc/passwd", "URL must start with http:// or https://"),
        ("example.com/a.wav", "URL must start with http:// or https://"),
        ("http:///a.wav", "URL has no host"),
        ("https://", "URL has no host"),
        ("http://exa mple.com/", "URL has an invalid host"),
        ("http://example.com:99999/", "URL is malformed"),
        ("http://example.com:0/", "URL is malformed"),  # not port 80
        ("http://example.com/\r\nX-Evil: 1", "URL contains control characters"),
    ],
)
def test_check_url_refuses_malformed_urls(url: str, message: str) -> None:
    with pytest.raises(UrlRefused, match=message):
        check_url(url, NetPolicy(), resolve=False)


def test_check_url_accepts_public_literals_without_network() -> None:
    check_url("http://93.184.216.34/a.wav", NetPolicy())
    check_url("https://user:secret@93.184.216.34:8443/a%20b.wav?x=1", NetPolicy())
    check_url("http://[2606:4700:4700::1111]/", NetPolicy())
    check_url("http://[::ffff:93.184.216.34]/", NetPolicy())  # mapped form of a public address reaches just that


def test_check_url_without_resolve_skips_names_but_not_literals() -> None:
    check_url("http://localhost/", NetPolicy(), resolve=False)
    with pytest.raises(UrlRefused):
        check_url("http://10.1.2.3/", NetPolicy(), resolve=False)


def test_check_url_does_not_refuse_a_name_that_does_not_resolve() -> None:
    check_url("http://no-such-host.invalid/a.wav", NetPolicy())


@pytest.mark.parametrize("entry", ["127.0.0.1", "127.0.0.0/8", "localhost", "LocalHost"])
def test_allowed_hosts_let_local_addresses_through(entry: str) -> None:
    policy = NetPolicy(allowed_hosts=(entry,))
    url = "http://localhost:8000/" if "localhost" in entry.lower() else "http://127.0.0.1:8000/"
    check_url(url, policy)
    with pytest.raises(UrlRefused):
        check_url("http://10.0.0.1/", policy)


def test_allowed_network_also_covers_mapped_ipv6_form() -> None:
    check_url("http://[::ffff:10.0.0.1]/", NetPolicy(allowed_hosts=("10.0.0.0/8",)))


# --- download -----------------------------------------------------------------------------------------------------


def test_download_refuses_loopback_without_connecting(server: Server, tmp_path: Path) -> None:
    server.routes["/a.wav"] = lambda h: reply(h, 200, DATA)
    for url in (server.url("/a.wav"), server.url("/a.wav", host="localhost")):
        with pytest.raises(UrlRefused):
            download(url, tmp_path / "a.wav", NetPolicy(), max_bytes=10**9)
    assert server.connections == 0
    assert server.seen == []
    assert list(tmp_path.iterdir()) == []


def test_download_writes_the_exact_bytes(server: Server, tmp_path: Path) -> None:
    server.routes["/a.wav"] = lambda h: reply(h, 200, DATA, Content_Type="audio/wav")
    dest = tmp_path / "a.wav"
    assert download(server.url("/a.wav"), dest, LOCAL, max_bytes=len(DATA)) == len(DATA)
    assert dest.read_bytes() == DATA
    assert list(tmp_path.iterdir()) == [dest]  # no temp file left behind
    (request,) = server.seen
    assert request.method == "GET"
    assert request.headers["User-Agent"].startswith("diarist")
    assert request.headers.get_all("Host") == [f"127.0.0.1:{server.port}"]


def test_download_by_allowed_hostname_connects_to_its_address(server: Server, tmp_path: Path) -> None:
    server.routes["/a.wav"] = lambda h: reply(h, 200, DATA)
    policy = NetPolicy(allowed_hosts=("localhost",))
    assert download(server.url("/a.wav", host="localhost"), tmp_path / "a.wav", policy, max_bytes=10**9) == len(DATA)
    assert server.seen[0].headers["Host"] == f"localhost:{server.port}"


def test_download_sends_userinfo_as_basic_auth_and_never_shows_it(server: Server, tmp_path: Path) -> None:
    url = f"http://alice:s3cret@127.0.0.1:{server.port}/private.wav"
    with pytest.raises(FetchError) as info:
        download(url, tmp_path / "a.wav", LOCAL, max_bytes=10**9)
    assert "s3cret" not in str(info.value)
    assert server.seen[0].headers["Authorization"] == "Basic " + base64.b64encode(b"alice:s3cret").decode()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://user:TopSecretPw@example.com:9000/r?q=1", "http://***@example.com:9000/r?q=1"),
        ("https://token@[2001:db8::1]/a.wav", "https://***@[2001:db8::1]/a.wav"),
        ("http://a:b@c@example.com/x@y", "http://***@example.com/x@y"),  # the last @ of the authority ends it
        ("http://example.com/a@b.wav", "http://example.com/a@b.wav"),  # an @ in the path is no userinfo
        ("media://sample.wav", "media://sample.wav"),
    ],
)
def test_redact_url_hides_only_the_userinfo(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_download_stops_when_the_progress_callback_raises(server: Server, tmp_path: Path) -> None:
    server.routes["/a.wav"] = lambda h: reply(h, 200, DATA * 20)
    counts: list[int] = []

    class GiveUp(Exception):
        """The caller's own exception (the runner's JobAbandoned): it must come out as it is."""

    def give_up(count: int) -> None:
        counts.append(count)
        raise GiveUp

    with pytest.raises(GiveUp):
        download(server.url("/a.wav"), tmp_path / "a.wav", LOCAL, max_bytes=10**9, on_bytes=give_up)
    assert len(counts) == 1 and 0 < counts[0] < len(DATA) * 20
    assert list(tmp_path.iterdir()) == []  # partial temp file removed


def test_download_refuses_declared_size_over_limit(server: Server, tmp_path: Path) -> None:
    server.routes["/big.wav"] = lambda h: reply(h, 200, DATA)
    with pytest.raises(FetchError, match="file is larger than the 1000 bytes limit"):
        download(server.url("/big.wav"), tmp_path / "big.wav", LOCAL, max_bytes=1000)
    assert list(tmp_path.iterdir()) == []


def test_download_cuts_chunked_body_over_limit(server: Server, tmp_path: Path) -> None:
    def chunked(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        for _ in range(64):  # 4 MiB in all, far past the limit
            h.wfile.write(b"10000\r\n" + b"x" * 0x10000 + b"\r\n")
        h.wfile.write(b"0\r\n\r\n")

    server.routes["/stream.wav"] = chunked
    with pytest.raises(FetchError, match=r"file is larger than the 100 KiB limit"):
        download(server.url("/stream.wav"), tmp_path / "s.wav", LOCAL, max_bytes=100 * 1024)
    assert list(tmp_path.iterdir()) == []  # partial temp file removed


def test_download_chunked_body_within_limit(server: Server, tmp_path: Path) -> None:
    def chunked(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        h.wfile.write(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")

    server.routes["/small"] = chunked
    assert download(server.url("/small"), tmp_path / "s", LOCAL, max_bytes=11) == 11
    assert (tmp_path / "s").read_bytes() == b"hello world"


def test_download_http_error(server: Server, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match=r"HTTP 404 from 127\.0\.0\.1"):
        download(server.url("/missing.wav"), tmp_path / "m.wav", LOCAL, max_bytes=10**9)
    assert list(tmp_path.iterdir()) == []


def test_download_follows_redirects(server: Server, tmp_path: Path) -> None:
    server.routes["/start"] = redirect(302, "/middle?x=1")  # relative
    server.routes["/middle?x=1"] = redirect(301, server.url("/next"))  # absolute
    server.routes["/next"] = redirect(303, "final.wav")  # relative to the directory
    server.routes["/final.wav"] = lambda h: reply(h, 200, DATA)
    policy = NetPolicy(allowed_hosts=("127.0.0.1",), max_redirects=3)
    assert download(server.url("/start"), tmp_path / "a.wav", policy, max_bytes=10**9) == len(DATA)
    assert [s.path for s in server.seen] == ["/start", "/middle?x=1", "/next", "/final.wav"]


def test_download_too_many_redirects(server: Server, tmp_path: Path) -> None:
    for i in range(5):
        server.routes[f"/hop{i}"] = redirect(307, f"/hop{i + 1}")
    server.routes["/hop5"] = lambda h: reply(h, 200, DATA)
    policy = NetPolicy(allowed_hosts=("127.0.0.1",), max_redirects=4)
    with pytest.raises(FetchError, match="too many redirects"):
        download(server.url("/hop0"), tmp_path / "a.wav", policy, max_bytes=10**9)
    assert len(server.seen) == 5


def test_download_redirect_to_metadata_address_is_refused(server: Server, tmp_path: Path) -> None:
    server.routes["/evil"] = redirect(302, "http://169.254.169.254/latest/meta-data/")
    started = time.monotonic()
    with pytest.raises(UrlRefused, match=r"169\.254\.169\.254 is a link-local address"):
        download(server.url("/evil"), tmp_path / "a.wav", LOCAL, max_bytes=10**9)
    assert time.monotonic() - started < 1  # refused, not a connection attempt that timed out


def test_download_redirect_to_other_scheme_is_refused(server: Server, tmp_path: Path) -> None:
    server.routes["/evil"] = redirect(302, "file:///etc/passwd")
    with pytest.raises(UrlRefused, match="http:// or https://"):
        download(server.url("/evil"), tmp_path / "a.wav", LOCAL, max_bytes=10**9)


def test_download_read_timeout(server: Server, tmp_path: Path) -> None:
    def slow(h: BaseHTTPRequestHandler) -> None:
        server.stop.wait(3)
        reply(h, 200, DATA)

    server.routes["/slow.wav"] = slow
    policy = NetPolicy(allowed_hosts=("127.0.0.1",), read_timeout=0.3)
    started = time.monotonic()
    with pytest.raises(FetchError, match=r"timed out after 0\.3 s"):
        download(server.url("/slow.wav"), tmp_path / "a.wav", policy, max_bytes=10**9)
    assert time.monotonic() - started < 2


def test_download_total_time_limit(server: Server, tmp_path: Path) -> None:
    def trickle(h: BaseHTTPRequestHandler) -> None:
        # Each chunk comes well within the read timeout; the whole file would take about 4 s.
        h.send_response(200)
        h.send_header("Content-Length", str(50 * len(DATA)))
        h.end_headers()
        for _ in range(50):
            if server.stop.wait(0.08):
                return
            h.wfile.write(DATA)
            h.wfile.flush()

    server.routes["/trickle.wav"] = trickle
    policy = NetPolicy(allowed_hosts=("127.0.0.1",), read_timeout=1.0, total_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(FetchError, match="did not finish within the time limit"):
        download(server.url("/trickle.wav"), tmp_path / "a.wav", policy, max_bytes=10**9)
    assert time.monotonic() - started < 2
    assert list(tmp_path.iterdir()) == []


def test_download_connection_refused(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}/a.wav"
    with pytest.raises(FetchError, match=r"could not connect to 127\.0\.0\.1"):
        download(url, tmp_path / "a.wav", LOCAL, max_bytes=10**9)


def test_download_unknown_host(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match=r"could not connect to no-such-host\.invalid"):
        download("http://no-such-host.invalid/a.wav", tmp_path / "a.wav", NetPolicy(), max_bytes=10**9)


@pytest.fixture
def tls_sniffer() -> Iterator[tuple[int, list[bytes]]]:
    """A TCP server that records the TLS ClientHello it receives and answers with plain HTTP (not TLS)."""
    hellos: list[bytes] = []
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    hellos.append(conn.recv(65536))
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                except OSError:
                    pass

    threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()[1], hellos
    listener.close()


def test_tls_uses_url_hostname_for_sni(tls_sniffer: tuple[int, list[bytes]], tmp_path: Path) -> None:
    port, hellos = tls_sniffer
    policy = NetPolicy(allowed_hosts=("localhost",))
    with pytest.raises(FetchError, match="secure connection to localhost failed"):
        download(f"https://localhost:{port}/a.wav", tmp_path / "a.wav", policy, max_bytes=10**9)
    # The TCP connection went to the checked address, but the handshake names the host from the URL.
    assert hellos[-1][:1] == b"\x16"  # a TLS handshake record
    assert b"localhost" in hellos[-1]
    assert post(f"https://localhost:{port}/hook", b"{}", {}, policy) == PostResult(False, None, "ssl_error")


# --- post ---------------------------------------------------------------------------------------------------------


def test_post_delivers_body_and_headers(server: Server) -> None:
    server.routes["/hook"] = lambda h: reply(h, 204)
    body = b'{"jobId":"j1","status":"succeeded"}'
    headers = {"Content-Type": "application/json", "X-Signature": "abc=", "X-Request-Timestamp": "1700000000"}
    assert post(server.url("/hook"), body, headers, LOCAL) == PostResult(True, 204, None)
    (request,) = server.seen
    assert (request.method, request.path, request.body) == ("POST", "/hook", body)
    for name, value in headers.items():
        assert request.headers[name] == value
    assert request.headers["Content-Length"] == str(len(body))
    assert request.headers["User-Agent"].startswith("diarist")


def test_post_keeps_callers_user_agent(server: Server) -> None:
    server.routes["/hook"] = lambda h: reply(h, 200)
    assert post(server.url("/hook"), b"x", {"user-agent": "custom/1"}, LOCAL).ok
    assert server.seen[0].headers["User-Agent"] == "custom/1"


def test_post_http_error(server: Server) -> None:
    server.routes["/hook"] = lambda h: reply(h, 500, b"boom")
    assert post(server.url("/hook"), b"{}", {}, LOCAL) == PostResult(False, 500, "http_error")


def test_post_timeout(server: Server) -> None:
    def slow(h: BaseHTTPRequestHandler) -> None:
        server.stop.wait(3)
        reply(h, 200)

    server.routes["/hook"] = slow
    started = time.monotonic()
    assert post(server.url("/hook"), b"{}", {}, LOCAL, timeout=0.3) == PostResult(False, None, "http_timeout")
    assert time.monotonic() - started < 1


def test_post_timeout_is_total_not_per_read(server: Server) -> None:
    def trickle(h: BaseHTTPRequestHandler) -> None:
        # Every byte arrives well within the read timeout, but the whole response would take ~3 s.
        for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n":
            if server.stop.wait(0.08):
                return
            h.wfile.write(bytes([byte]))
            h.wfile.flush()

    server.routes["/hook"] = trickle
    started = time.monotonic()
    assert post(server.url("/hook"), b"{}", {}, LOCAL, timeout=0.4).reason == "http_timeout"
    assert time.monotonic() - started < 1


def test_post_connection_failed() -> None:
    url = f"http://127.0.0.1:{closed_port()}/hook"
    assert post(url, b"{}", {}, LOCAL) == PostResult(False, None, "connection_failed")


def test_post_too_many_redirects(server: Server) -> None:
    for i in range(3):
        server.routes[f"/r{i}"] = redirect(307, f"/r{i + 1}")
    server.routes["/r3"] = lambda h: reply(h, 200)
    assert post(server.url("/r0"), b"{}", {}, LOCAL, max_redirects=2) == PostResult(False, 307, "too_many_redirects")
    assert [s.path for s in server.seen] == ["/r0", "/r1", "/r2"]
    server.seen.clear()
    assert post(server.url("/r1"), b"{}", {}, LOCAL, max_redirects=2).ok  # exactly two redirects are fine


@pytest.mark.parametrize("status", [307, 308])
def test_post_redirect_keeps_method_and_body(server: Server, status: int) -> None:
    server.routes["/old"] = redirect(status, "/new")
    server.routes["/new"] = lambda h: reply(h, 200)
    headers = {"Content-Type": "application/json"}
    assert post(server.url("/old"), b'{"a":1}', headers, LOCAL) == PostResult(True, 200, None)
    assert [(s.method, s.path, s.body) for s in server.seen] == [
        ("POST", "/old", b'{"a":1}'),
        ("POST", "/new", b'{"a":1}'),
    ]
    assert server.seen[1].headers["Content-Type"] == "application/json"


@pytest.mark.parametrize("status", [301, 302, 303])
def test_post_does_not_follow_redirects_that_would_turn_it_into_a_get(server: Server, status: int) -> None:
    server.routes["/old"] = redirect(status, "/new")
    server.routes["/new"] = lambda h: reply(h, 200)
    headers = {"Content-Type": "application/json", "X-Signature": "s"}
    assert post(server.url("/old"), b'{"a":1}', headers, LOCAL) == PostResult(False, status, "http_error")
    assert [(s.method, s.path) for s in server.seen] == [("POST", "/old")]


def test_post_redirect_to_other_origin_drops_authorization(server: Server) -> None:
    server.routes["/old"] = redirect(307, server.url("/new", host="localhost"))
    server.routes["/new"] = lambda h: reply(h, 200)
    policy = NetPolicy(allowed_hosts=("127.0.0.1", "localhost"))
    assert post(server.url("/old"), b"{}", {"Authorization": "Bearer t", "X-Signature": "s"}, policy).ok
    first, second = server.seen
    assert first.headers["Authorization"] == "Bearer t"
    assert "Authorization" not in second.headers
    assert second.headers["X-Signature"] == "s"


def test_post_refused_address_is_connection_failed(server: Server) -> None:
    server.routes["/hook"] = lambda h: reply(h, 200)
    assert post(server.url("/hook"), b"{}", {}, NetPolicy()) == PostResult(False, None, "connection_failed")
    assert post(server.url("/hook", host="localhost"), b"{}", {}, NetPolicy()).reason == "connection_failed"
    assert post("ftp://example.com/hook", b"{}", {}, NetPolicy()).reason == "connection_failed"
    assert server.connections == 0


def test_post_redirect_to_refused_address(server: Server) -> None:
    server.routes["/hook"] = redirect(307, "http://10.0.0.1/steal")
    assert post(server.url("/hook"), b"{}", {}, LOCAL) == PostResult(False, None, "connection_failed")
