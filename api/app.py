"""The query API (FastAPI; OpenAPI at /docs): search with facets, more-like-this, asset cards,
downloads by presigned URL, the HTTP upload producer, and the web app on the same port (/, docs/ui.md)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import PlainTextResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.cards import load_card
from api.deps import settings_of
from api.routers import ROUTERS
from api.security import install_security
from api.upload_routes import router as upload_router
from api.web_routes import STATIC_DIR
from core import db
from core.metrics import refresh_worker_gauges, set_worker_lag
from core.service_state import live_state
from core.settings import Settings, get_settings
from core.storage import ObjectStore
from producers.ingest import Ingestor
from retrieval.search import get_search_index
from retrieval.worker_lag import worker_lag
from sinks import lifecycle

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(title="Argus media annotation and retrieval API", version="0.1.0")
    app.state.settings = settings
    app.state.index = get_search_index(settings)
    app.state.store = ObjectStore(settings)
    app.state.ingestor = Ingestor(settings, app.state.store)
    install_security(app, settings)  # hashed keys + scopes, size and rate limits (api/security.py)
    app.include_router(upload_router)
    for router in ROUTERS:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")  # the web app's CSS, JS, icons

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"])
    def readyz(request: Request) -> dict[str, Any]:
        try:
            with db.connect(settings_of(request)) as conn:
                conn.execute("SELECT 1")
        except Exception as exc:  # noqa: BLE001
            raise HTTPException(503, f"database unavailable: {exc}") from None
        # under `argus serve`: a crash-looping model is degraded, the API still answers (200), and says so
        st = live_state(settings_of(request))
        degraded = st.degraded_models() if st is not None else {}
        if st is not None:
            degraded |= {n: r for n, r in st.degraded().items() if not st.workers[n].model}
        if degraded:
            return {"status": "degraded", "degraded": degraded}
        return {"status": "ready"}

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
    def metrics() -> PlainTextResponse:
        refresh_worker_gauges(settings)  # argus_worker_up / _degraded / _restarts under `argus serve`
        st = live_state(settings)
        if st is not None:  # argus_worker_lag_records / _seconds, read from PostgreSQL (retrieval/worker_lag.py)
            try:
                set_worker_lag({n: (lg.records, lg.seconds) for n, lg in worker_lag(settings, st.workers).items()})
            except Exception as exc:  # noqa: BLE001 - PostgreSQL down: the other metrics still answer
                log.warning("worker lag unavailable: %s", exc)
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    # /v1/search and /v1/assets/{id}/similar live in api/search_routes.py (with the other search endpoints)

    @app.get("/v1/assets/{asset_id}", name="asset_card", tags=["assets"])
    def asset_card(request: Request, asset_id: str) -> dict[str, Any]:
        card = load_card(settings_of(request), asset_id)
        if card is None:
            raise HTTPException(404, f"no asset {asset_id}")
        card["download_url"] = str(request.url_for("download", asset_id=asset_id))
        return card

    @app.get("/v1/assets/{asset_id}/download", name="download", tags=["assets"])
    def download(request: Request, asset_id: str) -> RedirectResponse:
        with db.connect(settings_of(request)) as conn:
            row = conn.execute("SELECT object_key, filename FROM assets WHERE asset_id=%s", (asset_id,)).fetchone()
            withheld = row is not None and not lifecycle.state_of(conn, asset_id).visible  # docs/metadata.md
        if row is None or withheld:
            raise HTTPException(404, f"no asset {asset_id}")
        url = request.app.state.store.presigned_url(row["object_key"], row["filename"])
        return RedirectResponse(url, status_code=307)

    return app

