"""Live annotation states as server-sent events: ``GET /v1/live/assets?id=...`` (the web app's upload and asset
pages). Fed by PostgreSQL's NOTIFY through one listener per process (retrieval/status_feed.py), not by polling.

Events: ``state`` {asset_id, model, status, reason} for every committed per-model state, starting with the
current ones; a keep-alive comment every 15 s. Read access like every GET under /v1/ (api/security.py).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from sse_starlette.sse import EventSourceResponse

from api.deps import settings_of
from retrieval.status_feed import RESYNC, StatusFeed, current_states

router = APIRouter(prefix="/v1/live", tags=["live"])
MAX_IDS = 500


def _feed(request: Request) -> StatusFeed:
    feed = getattr(request.app.state, "status_feed", None)
    if feed is None:
        feed = request.app.state.status_feed = StatusFeed(settings_of(request))
    return feed  # type: ignore[no-any-return]


@router.get("/assets")
async def live_states(request: Request,
                      id: Annotated[list[str], Query(min_length=1, max_length=MAX_IDS,  # noqa: A002
                                                     description="asset ids to follow")]) -> EventSourceResponse:
    """Server-sent events: each model's state of these assets as the sinks commit it."""
    ids = {i for i in id if len(i) <= 128}
    if not ids:
        raise HTTPException(422, "give at least one asset id")
    feed = _feed(request)
    settings = settings_of(request)

    async def events() -> AsyncIterator[dict[str, Any]]:
        sub = feed.subscribe(ids)
        try:
            await run_in_threadpool(feed.connected.wait, 5.0)  # listening before the snapshot: no gap
            item: dict[str, Any] = RESYNC
            while True:
                if item is RESYNC:
                    for state in await run_in_threadpool(current_states, settings, ids):
                        yield {"event": "state", "data": json.dumps(state)}
                else:
                    yield {"event": "state", "data": json.dumps(item)}
                item = await sub.queue.get()
        finally:
            feed.unsubscribe(sub)

    return EventSourceResponse(events(), ping=15, headers={"Cache-Control": "no-store"})

