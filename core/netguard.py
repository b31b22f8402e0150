"""Fetching URLs that strangers control (feeds, their media) without SSRF, hangs or memory blow-ups.

- Only http/https. No proxies from the environment (a proxy would resolve names on our behalf).
- Every connection, including each redirect hop, goes through ``GuardedBackend.connect_tcp``: the host
  name is resolved once, EVERY resolved address must be globally routable (no loopback, private,
  link-local (cloud metadata 169.254.169.254), CGNAT, multicast, reserved, unspecified; IPv4-mapped
  IPv6 is unwrapped), and the socket connects to an address from that same answer, so a DNS
  rebinding between check and connect cannot slip in. ``feed.allow_networks`` lists exceptions
  (e.g. 127.0.0.0/8 in tests or an intranet wire server).
- Timeouts per operation plus a wall-clock deadline per download (a slow drip cannot hold us), a
  capped redirect count, and a byte cap enforced while streaming (Content-Length is not trusted).
"""

from __future__ import annotations

import ipaddress
import socket
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, BinaryIO

import httpcore
import httpx

from core.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class FetchError(Exception):
    """A URL that could not or must not be fetched; ``permanent`` -> do not retry it later."""

    permanent = False


class BlockedAddress(FetchError):
    permanent = True


class TooLarge(FetchError):
    permanent = True


class BadURL(FetchError):
    permanent = True


def parse_networks(items: Iterable[str]) -> list[Network]:
    return [ipaddress.ip_network(n, strict=False) for n in items]


def check_address(ip: IPAddress, allow: list[Network]) -> None:
    """Raise BlockedAddress unless ``ip`` is globally routable or explicitly allowed."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    if any(ip in net for net in allow):
        return
    if (not ip.is_global or ip.is_multicast or ip.is_reserved or ip.is_unspecified or ip.is_loopback
            or ip.is_link_local or ip.is_private):
        raise BlockedAddress(f"address {ip} is not allowed (loopback/private/link-local/reserved)")


def resolve(host: str, port: int) -> list[IPAddress]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise FetchError(f"cannot resolve {host!r}: {exc.strerror}") from None
    out: list[IPAddress] = []
    for *_, sockaddr in infos:
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if ip not in out:
            out.append(ip)
    return out


class GuardedBackend(httpcore.SyncBackend):
    """httpcore's socket backend with the address policy applied at connect time."""

    def __init__(self, allow: list[Network]) -> None:
        self.allow = allow

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None, socket_options: Iterable[Any] | None = None
                    ) -> httpcore.NetworkStream:
        addresses = resolve(host, port)
        if not addresses:
            raise BlockedAddress(f"{host!r} resolved to no address")
        for ip in addresses:  # every answer must pass: a name mixing public and private is refused
            check_address(ip, self.allow)
        last: Exception | None = None
        for ip in addresses:  # TLS still verifies the original host name (httpcore passes it as SNI)
            try:
                return super().connect_tcp(str(ip), port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                last = exc
        assert last is not None
        raise last


def guarded_client(settings: Settings, allow_networks: list[str] | None = None, timeout_s: float | None = None,
                   follow_redirects: bool = True) -> httpx.Client:
    """The SSRF-guarded client (feed.* policy; a caller with its own policy, e.g. webhooks, passes it)."""
    f = settings.feed
    allow = f.allow_networks if allow_networks is None else allow_networks
    timeout = f.timeout_s if timeout_s is None else timeout_s
    transport = httpx.HTTPTransport(retries=0)
    ssl_context = transport._pool._ssl_context  # keep httpx's certificate verification setup
    transport._pool = httpcore.ConnectionPool(
        ssl_context=ssl_context, max_connections=10, max_keepalive_connections=5, keepalive_expiry=5.0,
        network_backend=GuardedBackend(parse_networks(allow)),
    )

    def only_http(request: httpx.Request) -> None:  # also runs for every redirect hop
        if request.url.scheme not in ("http", "https"):
            raise BadURL(f"scheme {request.url.scheme!r} is not allowed")

    return httpx.Client(
        transport=transport, trust_env=False, follow_redirects=follow_redirects, max_redirects=f.max_redirects,
        timeout=httpx.Timeout(timeout, connect=min(5.0, timeout)),
        headers={"User-Agent": f.user_agent}, event_hooks={"request": [only_http]},
    )


@dataclass
class Fetched:
    url: str  # after redirects
    status: int
    headers: httpx.Headers
    body: BinaryIO | None  # positioned at 0; None for 304
    size: int


def fetch(client: httpx.Client, url: str, max_bytes: int, deadline_s: float,
          headers: dict[str, str] | None = None) -> Fetched:
    """GET ``url`` into a spooled temp file, refusing more than ``max_bytes`` or ``deadline_s`` seconds."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise BadURL(f"invalid URL: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise BadURL(f"not an http(s) URL: {url[:200]}")
    end = time.monotonic() + deadline_s
    try:
        with client.stream("GET", url, headers=headers or {}) as r:
            if r.status_code == 304:
                return Fetched(str(r.url), 304, r.headers, None, 0)
            if r.status_code >= 400:
                err = FetchError(f"HTTP {r.status_code} from {r.url}")
                err.permanent = r.status_code in (400, 401, 403, 404, 410, 451)
                raise err
            declared = r.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise TooLarge(f"{url[:200]}: {declared} bytes > limit {max_bytes}")
            spool = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)  # noqa: SIM115 - returned open
            size = 0
            for chunk in r.iter_bytes(64 * 1024):
                size += len(chunk)
                if size > max_bytes:
                    spool.close()
                    raise TooLarge(f"{url[:200]}: more than {max_bytes} bytes")
                if time.monotonic() > end:
                    spool.close()
                    raise FetchError(f"{url[:200]}: download exceeded {deadline_s:.0f}s")
                spool.write(chunk)
            spool.seek(0)
            return Fetched(str(r.url), r.status_code, r.headers, spool, size)  # type: ignore[arg-type]
    except FetchError:
        raise
    except httpx.TooManyRedirects:
        raise FetchError(f"{url[:200]}: too many redirects") from None
    except httpx.HTTPError as exc:
        cause = exc.__context__ if isinstance(exc.__context__, FetchError) else None
        if cause is not None:  # our own refusal raised inside the transport (e.g. BlockedAddress)
            raise cause from None
        raise FetchError(f"{url[:200]}: {type(exc).__name__}: {exc}") from None
