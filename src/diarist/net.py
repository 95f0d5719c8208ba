"""SSRF-safe HTTP: downloading the audio URL a user submits, and POSTing webhooks.

Built on httpcore with our own network backend: it resolves the host itself, refuses the connection when any
address is not public (unless allowed by the policy), and then connects to exactly the address it checked, so a
DNS answer cannot change between the check and the connection. TLS still verifies the hostname from the URL,
because httpcore passes the URL host as `server_hostname` to `start_tls`. Redirects are followed here, one hop at
a time, so every hop goes through the same check; a POST follows only those that keep its method and body.

Messages of `UrlRefused` and `FetchError` are meant for end users; they name the host, never the whole URL, so
credentials in `user:pass@` never reach a message or a log. Code that must show a whole URL passes it through
`redact_url` first.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import functools
import importlib.metadata
import ipaddress
import logging
import os
import re
import socket
import ssl
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urljoin, urlsplit

import httpcore

from diarist.errors import DiaristError

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# The redirects that repeat the request as it was; the others turn a POST into a GET without its body.
_SAME_METHOD_REDIRECTS = frozenset({307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# RFC 8215 local-use NAT64: each network picks its own prefix length inside it, so where an IPv4 address sits is
# unknowable; it only leads into someone's own network, so the whole range is refused.
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_IPV4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")  # SIIT (RFC 2765), not the mapped ::ffff:0:0/96
_HOSTNAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*")
# The authority's userinfo: everything up to its last "@", as urlsplit reads it (the authority ends at / ? #).
_USERINFO = re.compile(r"^(\s*(?:[a-z][a-z0-9+.-]*:)?//)[^/?#]*@", re.IGNORECASE)
# Characters left as they are when a path or query is re-quoted; "%" keeps existing escapes intact.
_SAFE_TARGET = "/%:@!$&'()*+,;=-._~?"
# Headers we always set ourselves, so a caller cannot make the framing or the Host disagree with the URL.
_OWN_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})


class UrlRefused(DiaristError):
    """The URL may not be fetched: wrong scheme, no host, or it leads to an address that is not public."""


class FetchError(DiaristError):
    """The URL was allowed but fetching it failed; `status` is the HTTP status of a response that was not 2xx."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class TooLargeError(FetchError):
    """The file is larger than the download's byte limit."""


@dataclass(frozen=True)
class NetPolicy:
    allowed_hosts: tuple[str, ...] = ()  # hostnames, IPs or CIDR networks reachable even if private/loopback
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    max_redirects: int = 5
    total_timeout: float | None = None  # for a whole download: a server that trickles bytes cannot hold it
    min_rate: int = 0  # bytes/s a download must average over each `rate_window` seconds; 0: no minimum
    rate_window: float = 30.0


@dataclass(frozen=True)
class PostResult:
    ok: bool
    status: int | None  # final HTTP status, None when no response
    reason: str | None  # None when ok, else one of the reasons listed in `post`


# --- URLs -------------------------------------------------------------------------------------------------------


def redact_url(url: str) -> str:
    """url with its `user:password@` replaced by `***@`, for logs and error messages; the rest is kept."""
    return _USERINFO.sub(r"\1***@", url)


@dataclass(frozen=True)
class _Target:
    """A parsed http(s) URL, in the exact form it is sent (so no second parser can read it differently)."""

    scheme: str
    host: str  # lower-case ASCII (IDNA), IPv6 without brackets, no trailing dot
    port: int
    target: str  # path and query, percent-encoded
    userinfo: tuple[str, str] | None = field(default=None, repr=False)  # never printed: it holds a password

    @property
    def origin(self) -> tuple[str, str, int]:
        return self.scheme, self.host, self.port

    def httpcore_url(self) -> httpcore.URL:
        return httpcore.URL(scheme=self.scheme, host=self.host, port=self.port, target=self.target)

    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == _DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"


# What _parse takes, as a JSON Schema (ECMA-262) pattern for the OpenAPI document: http or https, a host, no
# control characters. (_parse also strips blanks around the URL, which the pattern does not allow.)
HTTP_URL_PATTERN = r"^[Hh][Tt][Tt][Pp][Ss]?://[^/?#:@\x00-\x20\x7f][^\x00-\x1f\x7f]*$"


def _parse(url: str) -> _Target:
    """Split url into the pieces we send, or raise UrlRefused."""
    url = url.strip() if isinstance(url, str) else ""
    # urlsplit would silently drop tabs and newlines; a URL that has them is not what the user meant.
    if any(ord(c) < 0x20 or c == "\x7f" for c in url):
        raise UrlRefused("URL contains control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
        hostname = parts.hostname
    except ValueError:
        raise UrlRefused("URL is malformed") from None
    if parts.scheme.lower() not in _DEFAULT_PORTS:
        raise UrlRefused("URL must start with http:// or https://")
    scheme = parts.scheme.lower()
    if not hostname:
        raise UrlRefused("URL has no host")
    if port == 0:  # not a port one can connect to; it must not fall back to the default port
        raise UrlRefused("URL is malformed")
    host = _normalize_host(hostname)
    path = quote(parts.path or "/", safe=_SAFE_TARGET)
    target = path + ("?" + quote(parts.query, safe=_SAFE_TARGET) if parts.query else "")
    userinfo = None
    if parts.username is not None:
        userinfo = (unquote(parts.username), unquote(parts.password or ""))
    return _Target(scheme, host, _DEFAULT_PORTS[scheme] if port is None else port, target, userinfo)


def _normalize_host(hostname: str) -> str:
    """Lower-case ASCII form of a hostname or IP literal; raises UrlRefused when it cannot be a host."""
    host = hostname.lower().rstrip(".")
    if ":" in host:  # only an IPv6 literal has a colon here; urlsplit removed the brackets
        # Kept as written (so messages show ::ffff:10.0.0.1, not ::ffff:a00:1); zone ids are never needed.
        if "%" in host or not _is_ip(host):
            raise UrlRefused("URL has an invalid host")
        return host
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise UrlRefused("URL has an invalid host") from None
    if not _HOSTNAME.fullmatch(host):
        raise UrlRefused("URL has an invalid host")
    return host


# --- Addresses --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Allowlist:
    hostnames: frozenset[str]
    networks: tuple[IPNetwork, ...]


@functools.lru_cache(maxsize=32)
def _allowlist(entries: tuple[str, ...]) -> _Allowlist:
    hostnames: set[str] = set()
    networks: list[IPNetwork] = []
    for entry in entries:
        entry = entry.strip().lower()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
        except ValueError:
            hostnames.add(entry.rstrip("."))
            with contextlib.suppress(UrlRefused):
                hostnames.add(_normalize_host(entry))  # the IDNA form is what a parsed URL carries
    return _Allowlist(frozenset(hostnames), tuple(networks))


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, compatible, translated, NAT64 or 6to4), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64 or ip in _IPV4_COMPATIBLE or ip in _IPV4_TRANSLATED:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def _ipv4_problem(ip: ipaddress.IPv4Address) -> str | None:
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:  # includes the cloud metadata address 169.254.169.254
        return "a link-local address"
    if ip in _CGNAT:
        return "a carrier-grade NAT address"
    if ip.is_multicast:  # is_global is True for most multicast, so it needs its own test
        return "a multicast address"
    if ip.is_reserved or ip == ipaddress.IPv4Address("255.255.255.255"):
        return "a reserved address"
    if ip.is_private:
        return "a private address"
    if not ip.is_global:
        return "not a public address"
    return None


def _address_problem(ip: IPAddress) -> str | None:
    """Why ip may not be reached ("a private address", ...), or None when it is a public unicast address."""
    if isinstance(ip, ipaddress.IPv4Address):
        return _ipv4_problem(ip)
    # ::1 and :: sit inside the IPv4-compatible range; name them before unwrapping turns them into 0.0.0.x.
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_unspecified:
        return "an unspecified address"
    if ip in _LOCAL_NAT64:
        return "a local-use NAT64 address"
    embedded = _embedded_ipv4(ip)
    if embedded is not None:
        problem = _ipv4_problem(embedded)
        if problem is not None:
            return problem
        if ip.ipv4_mapped is not None or ip in _NAT64:
            return None  # these reach exactly the (public) IPv4 address; is_global would wrongly refuse them
        if ip in _IPV4_COMPATIBLE or ip in _IPV4_TRANSLATED:
            return "a reserved address"  # deprecated forms, no legitimate use
    if ip.is_reserved:  # the rest of ::/8 and the other unassigned ranges, which is_global may call global
        return "a reserved address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_site_local:  # deprecated fec0::/10, but is_global still calls it global
        return "a site-local address"
    if ip.is_private:
        return "a private address"
    if not ip.is_global:
        return "not a public address"
    return None


def _ip_allowed(ip: IPAddress, allow: _Allowlist) -> bool:
    candidates: list[IPAddress] = [ip]
    if isinstance(ip, ipaddress.IPv6Address) and (embedded := _embedded_ipv4(ip)) is not None:
        candidates.append(embedded)  # an allowed 127.0.0.1 also allows ::ffff:127.0.0.1
    return any(c.version == net.version and c in net for c in candidates for net in allow.networks)


def _check_addresses(host: str, addresses: Iterable[str], policy: NetPolicy) -> None:
    """Raise UrlRefused when any address is neither public nor allowed by the policy."""
    allow = _allowlist(policy.allowed_hosts)
    if host in allow.hostnames:
        return
    for text in addresses:
        ip = ipaddress.ip_address(text.split("%")[0])  # drop a scope id: it would defeat the network tests
        problem = _address_problem(ip)
        if problem is None or _ip_allowed(ip, allow):
            continue
        if _is_ip(host):
            raise UrlRefused(f"URL refused: {host} is {problem}")
        raise UrlRefused(f"URL refused: {host} resolves to {ip}, {problem}")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _getaddrinfo(host: str, port: int, numeric_only: bool = False) -> list[tuple[int, Any]]:
    """(family, sockaddr) for each TCP address of host; numeric_only never touches DNS."""
    flags = socket.AI_NUMERICHOST if numeric_only else 0
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP, flags=flags)
    return [(family, sockaddr) for family, _, _, _, sockaddr in infos]


def check_url(url: str, policy: NetPolicy, resolve: bool = True) -> None:
    """Raise UrlRefused unless url is http(s) with a host, and (resolve=True) every address it resolves to is allowed.

    A host that does not resolve is not refused here: the later fetch fails with FetchError. IP literals (also odd
    forms such as 127.1 or 2130706433, which the resolver accepts) are checked even when resolve=False.
    """
    target = _parse(url)
    if target.host in _allowlist(policy.allowed_hosts).hostnames:
        return
    try:
        infos = _getaddrinfo(target.host, target.port, numeric_only=True)
    except (socket.gaierror, UnicodeError):
        if not resolve:
            return
        try:
            infos = _getaddrinfo(target.host, target.port)
        except (socket.gaierror, UnicodeError, OSError):
            return
    _check_addresses(target.host, (sockaddr[0] for _, sockaddr in infos), policy)


# --- Network backend ----------------------------------------------------------------------------------------------


class _ResolveError(httpcore.ConnectError):
    """The host name did not resolve."""


def _clamp(timeout: float | None, deadline: float | None, exc: type[Exception]) -> float | None:
    """timeout shortened so that it ends by deadline; raises exc once the deadline has passed."""
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise exc("deadline passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """Wraps a stream so that no read or write can outlast the request's overall deadline."""

    def __init__(self, stream: httpcore.NetworkStream, deadline: float) -> None:
        self._stream = stream
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _clamp(timeout, self._deadline, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _clamp(timeout, self._deadline, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        timeout = _clamp(timeout, self._deadline, httpcore.ConnectTimeout)
        return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, timeout), self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _GuardedBackend(httpcore.NetworkBackend):
    """Resolves the host itself, refuses non-public addresses, and connects to the very address it checked."""

    def __init__(self, policy: NetPolicy, deadline: float | None = None) -> None:
        self._policy = policy
        self._deadline = deadline
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            infos = _getaddrinfo(host, port)
        except (socket.gaierror, UnicodeError) as exc:
            raise _ResolveError(f"could not resolve {host}") from exc
        addresses = [sockaddr[0] for _, sockaddr in infos]
        _check_addresses(host, addresses, self._policy)  # all of them, before any connection is attempted
        last_error: Exception = _ResolveError(f"could not resolve {host}")
        for address in dict.fromkeys(addresses):  # in resolver order, like socket.create_connection
            try:
                attempt = _clamp(timeout, self._deadline, httpcore.ConnectTimeout)
                stream = self._inner.connect_tcp(address, port, attempt, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last_error = exc
                continue
            return stream if self._deadline is None else _DeadlineStream(stream, self._deadline)
        raise last_error

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("unix sockets are not allowed")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


# --- Requests and redirects ---------------------------------------------------------------------------------------


class _Failure(Exception):
    """A failed exchange, with both a webhook reason and a message for end users."""

    def __init__(self, reason: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.status = status


@functools.cache
def _user_agent() -> str:
    try:
        return f"diarist/{importlib.metadata.version('diarist')}"
    except importlib.metadata.PackageNotFoundError:
        return "diarist"


def _request_headers(
    target: _Target, given: dict[str, str], first: _Target, body: bytes | None
) -> list[tuple[str, str]]:
    """Headers for one hop: the caller's, plus Host, User-Agent, credentials and framing."""
    cross_origin = target.origin != first.origin
    headers = [("Host", target.host_header())]
    names: set[str] = set()
    for name, value in given.items():
        lower = name.lower()
        # Like browsers, never hand the caller's credentials to another origin a redirect points at.
        if lower in _OWN_HEADERS or (cross_origin and lower in ("authorization", "cookie")):
            continue
        headers.append((name, value))
        names.add(lower)
    if "user-agent" not in names:
        headers.append(("User-Agent", _user_agent()))
    if target.userinfo is not None and "authorization" not in names:
        token = base64.b64encode(":".join(target.userinfo).encode()).decode("ascii")
        headers.append(("Authorization", f"Basic {token}"))
    if body is not None:
        headers.append(("Content-Length", str(len(body))))
    return headers


_HTTPCORE_ERRORS = (
    httpcore.TimeoutException,
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.UnsupportedProtocol,
    httpcore.ConnectionNotAvailable,
)


def _ssl_cause(exc: BaseException) -> ssl.SSLError | None:
    """The ssl error httpcore wrapped into exc, if any (it re-raises with `from`)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _failure(exc: Exception, target: _Target, timeouts: dict[str, float], deadline: float | None) -> _Failure:
    """Translate an httpcore exception into a webhook reason and a message for end users."""
    host = target.host
    # A timeout cut short by the overall deadline is the deadline's doing, whatever its message.
    if isinstance(exc, httpcore.TimeoutException) and deadline is not None and time.monotonic() >= deadline:
        return _Failure("http_timeout", "did not finish within the time limit")
    if isinstance(exc, httpcore.ConnectTimeout):
        return _Failure("http_timeout", f"could not connect to {host}: timed out after {timeouts['connect']:g} s")
    if isinstance(exc, httpcore.TimeoutException):
        return _Failure("http_timeout", f"timed out after {timeouts['read']:g} s")
    if isinstance(exc, _ResolveError):
        return _Failure("connection_failed", f"could not connect to {host}: host not found")
    tls = _ssl_cause(exc)
    if tls is not None:
        why = getattr(tls, "verify_message", None) or tls.reason or "TLS error"
        return _Failure("ssl_error", f"secure connection to {host} failed: {why}")
    if isinstance(exc, httpcore.ConnectError):
        return _Failure("connection_failed", f"could not connect to {host}")
    if isinstance(exc, httpcore.NetworkError):
        return _Failure("connection_failed", f"connection to {host} was interrupted")
    if isinstance(exc, httpcore.RemoteProtocolError):
        return _Failure("connection_failed", f"{host} sent an invalid HTTP response")
    return _Failure("unknown_error", f"could not fetch from {host}")


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                return value.decode("latin-1")
    return None


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The declared body size, or None when absent or ambiguous (the streaming limit still applies then)."""
    values = {value.strip() for key, value in headers if key.lower() == b"content-length"}
    if len(values) != 1:
        return None
    value = values.pop()
    return int(value) if value.isdigit() else None


@contextlib.contextmanager
def _exchange(
    pool: httpcore.ConnectionPool,
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes | None,
    max_redirects: int,
    policy: NetPolicy,
    timeouts: dict[str, float],
    deadline: float | None = None,
    follow: frozenset[int] = _REDIRECTS,
) -> Iterator[tuple[httpcore.Response, _Target]]:
    """Send the request, follow the redirects whose status is in `follow` (each hop checked again), and yield
    the final streaming response: a redirect that is not followed is that response.

    Every hop repeats the method and body: only a GET may follow 301/302/303, which ask browsers to change it.
    httpcore exceptions, also those raised while the caller reads the body, come out as _Failure.
    """
    first = target = _parse(url)
    redirects = 0
    while True:
        # Literal addresses are refused before any connection; names are checked by the backend when it resolves.
        check_url(url, policy, resolve=False)
        if deadline is not None and time.monotonic() >= deadline:
            raise _Failure("http_timeout", "timed out")
        try:
            with pool.stream(
                method,
                target.httpcore_url(),
                headers=_request_headers(target, headers, first, body),
                content=body,
                extensions={"timeout": timeouts},
            ) as response:
                location = _header(response.headers, b"location")
                if response.status not in follow or location is None:
                    yield response, target
                    return
                if redirects >= max_redirects:
                    raise _Failure("too_many_redirects", "too many redirects", response.status)
                redirects += 1
                status = response.status
        except _HTTPCORE_ERRORS as exc:
            raise _failure(exc, target, timeouts, deadline) from exc
        url = urljoin(url, location.strip())
        target = _parse(url)
        log.debug("following HTTP %d redirect to %s", status, target.host)


def _size_text(n: int) -> str:
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= factor:
            return f"{n / factor:.4g} {unit}"
    return f"{n} bytes"


def _save(chunks: Iterable[bytes], dest: Path, max_bytes: int, on_bytes: Callable[[int], None] | None) -> int:
    """Write chunks to a temp file beside dest, then rename it into place; stops past max_bytes.

    on_bytes gets the byte count after each chunk; whatever it raises stops the download (temp file deleted).
    """
    try:
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    except OSError as exc:
        raise FetchError(f"could not save the download: {exc.strerror}") from exc
    tmp = Path(tmp_name)
    count = 0
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                count += len(chunk)
                if count > max_bytes:
                    raise TooLargeError(f"file is larger than the {_size_text(max_bytes)} limit")
                out.write(chunk)
                if on_bytes is not None:
                    on_bytes(count)
        tmp.replace(dest)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise FetchError("the server's disk is full; try again later") from exc
        if isinstance(exc, OSError):
            raise FetchError(f"could not save the download: {exc.strerror}") from exc
        raise
    return count


def _paced(chunks: Iterable[bytes], min_rate: int, window: float) -> Iterator[bytes]:
    """`chunks`, or FetchError once fewer than `min_rate` bytes/s arrived over a `window` seconds long.

    The read timeout only catches a server that stops; one that sends a byte now and then would
    hold the worker until the total timeout, an hour by default.
    """
    start, count = time.monotonic(), 0
    for chunk in chunks:
        count += len(chunk)
        now = time.monotonic()
        if now - start >= window:
            if count < min_rate * (now - start):
                raise FetchError(f"the download was slower than {min_rate} bytes/s")
            start, count = now, 0
        yield chunk


def download(
    url: str, dest: Path, policy: NetPolicy, max_bytes: int, on_bytes: Callable[[int], None] | None = None
) -> int:
    """Stream a GET of url to dest (temp file next to dest, then rename) and return the byte count.

    Refuses early when Content-Length exceeds max_bytes and stops once the body does, or once it arrives
    slower than policy.min_rate. Follows up to policy.max_redirects redirects, checking every hop. Raises
    UrlRefused or FetchError, or whatever on_bytes raises: it is called with the count so far as bytes
    arrive, so a caller can give up on a slow download (the connection is closed and nothing is left on disk).
    """
    dest = Path(dest)
    timeouts = {
        "connect": policy.connect_timeout,
        "read": policy.read_timeout,
        "write": policy.read_timeout,
        "pool": policy.connect_timeout,
    }
    # Ask for the bytes as stored: httpcore does not decode, and we want the file itself.
    headers = {"Accept-Encoding": "identity"}
    deadline = None if policy.total_timeout is None else time.monotonic() + policy.total_timeout
    pool = httpcore.ConnectionPool(network_backend=_GuardedBackend(policy, deadline), retries=0)
    redirects = policy.max_redirects
    try:
        with pool, _exchange(pool, "GET", url, headers, None, redirects, policy, timeouts, deadline) as (resp, hop):
            if not 200 <= resp.status < 300:
                raise FetchError(f"HTTP {resp.status} from {hop.host}", resp.status)
            length = _content_length(resp.headers)
            if length is not None and length > max_bytes:
                raise TooLargeError(f"file is larger than the {_size_text(max_bytes)} limit")
            chunks = resp.iter_stream()
            if policy.min_rate:
                chunks = _paced(chunks, policy.min_rate, policy.rate_window)
            return _save(chunks, dest, max_bytes, on_bytes)
    except _Failure as exc:
        raise FetchError(exc.message) from None


def post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    policy: NetPolicy,
    timeout: float = 10.0,
    max_redirects: int = 2,
) -> PostResult:
    """POST body (webhook delivery); never raises. Success is a 2xx within `timeout` seconds in all.

    Failure reasons: "http_timeout", "too_many_redirects", "connection_failed" (also for a refused address),
    "ssl_error", "http_error" (a non-2xx status) and "unknown_error". 307/308 repeat the POST with its body and
    headers, up to `max_redirects` times; 301/302/303 are not followed but fail as "http_error": following them
    would turn the signed POST into a GET without its body.
    """
    deadline = time.monotonic() + timeout
    timeouts = {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}
    pool = httpcore.ConnectionPool(network_backend=_GuardedBackend(policy, deadline), retries=0)
    try:
        # Only the status matters, so the response body is never read.
        exchange = _exchange(
            pool, "POST", url, headers, body, max_redirects, policy, timeouts, deadline, _SAME_METHOD_REDIRECTS
        )
        with pool, exchange as (resp, _):
            status = resp.status
    except UrlRefused as exc:
        log.debug("webhook refused: %s", exc)
        return PostResult(False, None, "connection_failed")
    except _Failure as exc:
        log.debug("webhook failed: %s", exc.message)
        return PostResult(False, exc.status, exc.reason)
    except Exception:
        log.exception("webhook delivery failed unexpectedly")
        return PostResult(False, None, "unknown_error")
    ok = 200 <= status < 300
    return PostResult(ok, status, None if ok else "http_error")
