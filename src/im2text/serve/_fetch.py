"""Fetch remote images without becoming an SSRF proxy.

Every hop (the URL and each redirect target) is parsed, its host resolved once, and *every*
address checked; the connection then goes to the checked address itself (the Host header and TLS
SNI keep the name), so a DNS answer that changes between check and connect (rebinding) cannot
reach an internal service. Size and total time are bounded; proxies from the environment are
never used.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import SplitResult, urljoin, urlsplit

from im2text.serve._errors import ApiError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Cloud instance-metadata endpoints: refused even if an allow-list covers them.
_METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254")
)
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class UrlPolicy:
    """What a fetch may do (built from `ServeConfig`)."""

    max_bytes: int  # body size limit
    timeout_s: float  # total time, redirects included
    max_redirects: int  # redirects followed
    allow_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()  # exceptions


def _forbidden(message: str) -> ApiError:
    return ApiError(403, "url_forbidden", message)


def _failed(message: str) -> ApiError:
    return ApiError(422, "url_fetch_failed", message)


def address_problem(ip: IPAddress, policy: UrlPolicy) -> str | None:
    """Why `ip` may not be fetched from, or None if it may."""
    if isinstance(ip, ipaddress.IPv6Address):
        # IPv4 hidden inside IPv6 (::ffff:10.0.0.1, 6to4, Teredo) is judged as that IPv4.
        inner = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if inner is not None:
            why = address_problem(inner, policy)
            if why:
                return why
    if ip in _METADATA:
        return f"{ip} is a cloud metadata address"
    if any(ip in net for net in policy.allow_networks):
        return None
    for attr, what in (
        ("is_loopback", "loopback"),
        ("is_private", "private"),
        ("is_link_local", "link-local"),
        ("is_multicast", "multicast"),
        ("is_unspecified", "unspecified"),
        ("is_reserved", "reserved"),
    ):
        if getattr(ip, attr):
            return f"{ip} is a {what} address"
    if not ip.is_global:
        return f"{ip} is not a public address"
    return None


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to (tests replace this to fake DNS)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise _failed(f"cannot resolve host {host!r} ({e})") from None
    return list(
        dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos)
    )


def fetch(
    url: str, policy: UrlPolicy, *, resolver: Callable[[str, int], list[IPAddress]] | None = None
) -> bytes:
    """The body of `url` (following checked redirects), or ApiError (403 refused, 422 failed)."""
    resolver = resolver or resolve
    deadline = time.monotonic() + policy.timeout_s
    for _hop in range(policy.max_redirects + 1):
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise _forbidden(f"only http and https URLs are fetched, not {scheme or 'no'} scheme")
        if parts.username or parts.password:
            raise _forbidden("URLs with credentials are refused")
        host = parts.hostname
        if not host:
            raise _failed("URL has no host")
        try:
            port = parts.port or (443 if scheme == "https" else 80)
        except ValueError:
            raise _failed("URL has an invalid port") from None
        addresses = resolver(host, port)
        if not addresses:
            raise _failed(f"host {host!r} has no address")
        for ip in addresses:  # all of them: a mixed answer could be tried in any order
            why = address_problem(ip, policy)
            if why:
                raise _forbidden(f"refused to fetch {host!r}: {why}")
        status, location, body = _get(scheme, host, port, addresses[0], parts, policy, deadline)
        if status in _REDIRECTS:
            if not location:
                raise _failed(f"redirect ({status}) without a Location")
            url = urljoin(url, location)
            continue
        if status != 200:
            raise _failed(f"remote server answered HTTP {status}")
        return body
    raise _failed(f"too many redirects (more than {policy.max_redirects})")


class _PinnedHTTP(http.client.HTTPConnection):
    """Connects to a checked IP while keeping the name for the Host header."""

    def __init__(self, host: str, port: int, ip: IPAddress, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._ip = str(ip)

    def connect(self) -> None:
        self.sock = socket.create_connection((self._ip, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """Like `_PinnedHTTP`, with TLS verified against the host *name* (SNI + certificate)."""

    def __init__(self, host: str, port: int, ip: IPAddress, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._ip = str(ip)

    def connect(self) -> None:
        sock = socket.create_connection((self._ip, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def _get(
    scheme: str,
    host: str,
    port: int,
    ip: IPAddress,
    parts: SplitResult,
    policy: UrlPolicy,
    deadline: float,
) -> tuple[int, str | None, bytes]:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise _failed(f"fetching took longer than {policy.timeout_s:g} s")
    cls = _PinnedHTTPS if scheme == "https" else _PinnedHTTP
    conn = cls(host, port, ip, timeout=remaining)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    try:
        conn.request("GET", path, headers={"User-Agent": "im2text", "Accept": "image/*"})
        resp = conn.getresponse()
        if resp.status in _REDIRECTS:
            return resp.status, resp.getheader("Location"), b""
        length = resp.getheader("Content-Length")
        if length and length.isdigit() and int(length) > policy.max_bytes:
            raise ApiError(
                413, "image_too_large", f"remote image is {length} bytes (limit {policy.max_bytes})"
            )
        chunks: list[bytes] = []
        size = 0
        while True:
            if time.monotonic() > deadline:  # a server dripping bytes must not hold us forever
                raise _failed(f"fetching took longer than {policy.timeout_s:g} s")
            chunk = resp.read(_CHUNK)
            if not chunk:
                break
            size += len(chunk)
            if size > policy.max_bytes:
                raise ApiError(
                    413, "image_too_large", f"remote image exceeds {policy.max_bytes} bytes"
                )
            chunks.append(chunk)
        return resp.status, None, b"".join(chunks)
    except TimeoutError:
        raise _failed(f"fetching took longer than {policy.timeout_s:g} s") from None
    except (OSError, http.client.HTTPException) as e:
        raise _failed(f"cannot fetch URL ({e.__class__.__name__}: {e})") from None
    finally:
        conn.close()
