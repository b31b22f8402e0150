"""Request-scoped dependencies shared by the API routers."""

from __future__ import annotations

import hmac

from fastapi import Header, HTTPException, Request

from argus.settings import Settings


def settings_of(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def require_api_key(request: Request, x_api_key: str | None = Header(default=None)) -> None:
    """Write endpoints need a key (X-API-Key); compared in constant time."""
    keys = settings_of(request).api_keys
    if not x_api_key or not any(hmac.compare_digest(x_api_key, k) for k in keys):
        raise HTTPException(status_code=401, detail="missing or invalid X-API-Key")
