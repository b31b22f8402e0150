"""Request-scoped dependencies shared by the API routers."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Header, HTTPException, Request

from core.auth import KeyStore, Principal
from core.settings import Settings
from retrieval.query_embed import QueryEmbedder
from retrieval.search.interface import SearchIndex


def settings_of(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def index_of(request: Request) -> SearchIndex:
    return request.app.state.index  # type: ignore[no-any-return]


def embedder_of(request: Request) -> QueryEmbedder:
    """The app's query embedder (made on first use: it opens a Triton client)."""
    emb = getattr(request.app.state, "query_embedder", None)
    if emb is None:
        emb = request.app.state.query_embedder = QueryEmbedder(settings_of(request))
    return emb  # type: ignore[no-any-return]


def _principal(request: Request, x_api_key: str | None) -> Principal | None:
    principal: Principal | None = getattr(request.state, "principal", None)  # set by api.security
    if principal is None and x_api_key:
        keys = getattr(request.app.state, "keys", None)
        if keys is None:  # an app built without api.security.install_security
            keys = request.app.state.keys = KeyStore(settings_of(request))
        principal = keys.authenticate(x_api_key)
    return principal


def actor_of(request: Request) -> str | None:
    """Who did it, for audit trails: the authenticated key's id (header or login cookie), never the secret."""
    principal: Principal | None = getattr(request.state, "principal", None)
    return principal.key_id if principal is not None else None


def require_scope(scope: str) -> Callable[..., None]:
    """Dependency: a valid X-API-Key whose scopes include ``scope`` (admin includes every scope)."""

    def check(request: Request, x_api_key: str | None = Header(default=None)) -> None:
        principal = _principal(request, x_api_key)
        if principal is None:
            raise HTTPException(status_code=401, detail="missing or invalid X-API-Key")
        if not principal.allows(scope):
            raise HTTPException(status_code=403, detail=f"this API key lacks the {scope!r} scope")

    return check


def require_api_key(request: Request, x_api_key: str | None = Header(default=None)) -> None:
    """Upload endpoints: a key with the upload (or admin) scope. Keys are stored hashed (core/auth.py)."""
    require_scope("upload")(request, x_api_key)
