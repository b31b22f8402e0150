"""The API's security layer: one pure-ASGI middleware in front of every route.

In order, for each HTTP request (ops endpoints /healthz, /readyz, /metrics are exempt):

1. request size: a declared Content-Length over the cap is refused at once (413); an undeclared
   (chunked) body is counted while it streams and cut off at the cap, so an oversized upload never
   reaches the multipart parser's temp files;
2. authentication: ``X-API-Key`` -> the key store (core/auth.py: hashed keys with scopes); an invalid
   key is refused (401) even on routes that allow anonymous access, so a typo never passes silently.
   The web app's login puts the key in an HttpOnly, SameSite=Strict cookie instead (never in a URL, never
   readable by page scripts); a cookie-authenticated write must also carry ``X-Argus-CSRF: 1``, a header
   another site's form cannot send; a stale cookie counts as anonymous (the page offers the login);
3. rate limit: a token bucket per API key, or per client address when anonymous (429 + Retry-After);
   buckets live in this process (each API replica limits on its own);
4. read access: GET/HEAD under /v1/ need a key with the ``read`` scope unless ``anonymous_read``.

Write routes check their own scope with ``api.deps.require_scope`` (upload, admin).
"""

from __future__ import annotations

import json
import math
import threading
import time
from http.cookies import CookieError, SimpleCookie
from typing import Any

from fastapi import FastAPI, HTTPException
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core import metrics
from core.auth import KeyStore, Principal
from core.settings import Settings

EXEMPT = ("/healthz", "/readyz", "/metrics")
KEY_COOKIE = "argus_key"  # set by the web app's login (api/web_routes.py)
CSRF_HEADER = "x-argus-csrf"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def cookie_key(headers: dict[str, str]) -> str | None:
    try:
        morsel = SimpleCookie(headers.get("cookie", "")).get(KEY_COOKIE)
    except CookieError:
        return None
    return morsel.value if morsel is not None and morsel.value else None


class TokenBuckets:
    """rate tokens per second, up to burst; thread-safe; bounded in size."""

    def __init__(self, rate: float, burst: int, max_keys: int = 50000) -> None:
        self.rate, self.burst, self.max_keys = rate, float(burst), max_keys
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str, now: float | None = None) -> float:
        """0.0 when allowed, else the seconds until a token is available."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            if len(self._buckets) > self.max_keys:  # drop the fullest (idle) buckets first
                for k, _ in sorted(self._buckets.items(), key=lambda kv: -kv[1][0])[: self.max_keys // 10]:
                    self._buckets.pop(k, None)
            return (1.0 - tokens) / self.rate if self.rate > 0 else 3600.0


class _TooLarge(Exception):
    pass


def max_request_bytes(settings: Settings) -> int:
    cap = settings.security.max_request_bytes
    return cap if cap is not None else settings.limits.max_upload_bytes + 1024 * 1024


class SecurityMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings, keys: KeyStore) -> None:
        self.app = app
        self.settings = settings
        self.keys = keys
        self.buckets = TokenBuckets(settings.security.rate_per_s, settings.security.rate_burst)
        self.max_bytes = max_request_bytes(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT or scope["path"].startswith("/static/"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send, 413, "body_too_large", f"request body exceeds {self.max_bytes} bytes")
            return
        token = headers.get("x-api-key")
        from_cookie = token is None and (token := cookie_key(headers)) is not None
        if (from_cookie and scope["method"] not in SAFE_METHODS and scope["path"].startswith("/v1/")
                and headers.get(CSRF_HEADER) != "1"):
            await self._refuse(send, 403, "csrf", f"a cookie-authenticated {scope['method']} needs {CSRF_HEADER}: 1")
            return
        principal: Principal | None = None
        if token:
            try:
                principal = await run_in_threadpool(self.keys.authenticate, token)
            except Exception:  # noqa: BLE001 - key table unreachable: fail closed, but say why
                await self._refuse(send, 503, "auth_unavailable", "cannot verify API keys right now")
                return
            if principal is None and not from_cookie:
                client = scope.get("client") or ("?", 0)
                wait = self.buckets.take(f"badkey:{client[0]}")  # failed attempts are rate limited too
                await self._refuse(send, 429 if wait else 401, "invalid_key",
                                   "too many requests" if wait else "missing or invalid X-API-Key",
                                   retry_after=wait)
                return
        client = scope.get("client") or ("?", 0)
        wait = self.buckets.take(f"key:{principal.key_id}" if principal else f"ip:{client[0]}")
        if wait:
            await self._refuse(send, 429, "rate_limited", "too many requests", retry_after=wait)
            return
        if (scope["method"] in ("GET", "HEAD") and scope["path"].startswith("/v1/")
                and not self.settings.security.anonymous_read
                and (principal is None or not principal.allows("read"))):
            await self._refuse(send, 401 if principal is None else 403, "read_scope",
                               "an API key with the read scope is required")
            return
        scope.setdefault("state", {})["principal"] = principal

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, f"request body exceeds {self.max_bytes} bytes")
            return message

        await self.app(scope, limited_receive, send)

    @staticmethod
    async def _refuse(send: Send, status: int, reason: str, detail: str, retry_after: float = 0.0) -> None:
        metrics.API_REJECTED.labels(reason).inc()
        body = json.dumps({"detail": detail}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if retry_after:
            headers.append((b"retry-after", str(max(1, math.ceil(retry_after))).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def install_security(app: FastAPI, settings: Settings) -> None:
    """Key store on app.state + the middleware (call once in create_app)."""
    keys = KeyStore(settings)
    app.state.keys = keys
    app.add_middleware(SecurityMiddleware, settings=settings, keys=keys)


def principal_of(request: Any) -> Principal | None:
    return getattr(request.state, "principal", None)
