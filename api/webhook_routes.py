"""Admin API for webhooks (sinks/webhook_sink.py, docs/interfaces.md): register a URL that receives every
``assets.annotated`` event (HMAC-signed), list them, remove one, and see its deliveries (dead letters included).
Every route needs the ``admin`` scope. The secret is returned once, at registration."""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api.deps import require_scope, settings_of
from core import db, netguard
from sinks.webhook_sink import check_url, new_secret

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], dependencies=[Depends(require_scope("admin"))])


class WebhookIn(BaseModel):
    url: str = Field(max_length=2000)
    description: str | None = Field(None, max_length=500)


@router.post("", status_code=201)
async def register(request: Request, body: WebhookIn) -> dict[str, Any]:
    settings = settings_of(request)
    try:
        await run_in_threadpool(check_url, settings, body.url)
    except netguard.FetchError as exc:
        raise HTTPException(status_code=400, detail=f"webhook URL refused: {exc}") from None
    webhook_id, secret = "wh_" + secrets.token_hex(8), new_secret()
    with db.transaction(settings) as conn:
        conn.execute("INSERT INTO webhooks (webhook_id, url, secret, description) VALUES (%s, %s, %s, %s)",
                     (webhook_id, body.url, secret, body.description))
    return {"webhook_id": webhook_id, "url": body.url, "secret": secret,
            "signature": "X-Argus-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, '<t>.<body>')>"}


@router.get("")
def list_webhooks(request: Request) -> list[dict[str, Any]]:
    with db.connect(settings_of(request)) as conn:
        rows = conn.execute(
            """SELECT w.webhook_id, w.url, w.description, w.active, w.created_at,
                      count(*) FILTER (WHERE d.status = 'pending') AS pending,
                      count(*) FILTER (WHERE d.status = 'delivered') AS delivered,
                      count(*) FILTER (WHERE d.status = 'dead') AS dead
               FROM webhooks w LEFT JOIN webhook_deliveries d USING (webhook_id)
               GROUP BY w.webhook_id ORDER BY w.created_at""").fetchall()
    return [dict(r) for r in rows]


@router.delete("/{webhook_id}")
def remove(request: Request, webhook_id: str) -> dict[str, Any]:
    with db.transaction(settings_of(request)) as conn:
        cur = conn.execute("DELETE FROM webhooks WHERE webhook_id = %s", (webhook_id,))
    if cur.rowcount == 0:
        raise HTTPException(status_code=404, detail="no such webhook")
    return {"webhook_id": webhook_id, "removed": True}


@router.get("/{webhook_id}/deliveries")
def deliveries(request: Request, webhook_id: str, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    if status not in (None, "pending", "delivered", "dead"):
        raise HTTPException(status_code=400, detail="status is pending, delivered or dead")
    with db.connect(settings_of(request)) as conn:
        rows = conn.execute(
            """SELECT event_id, asset_id, status, attempts, last_status, last_error, next_attempt_at, created_at,
                      delivered_at
               FROM webhook_deliveries WHERE webhook_id = %s AND (%s::text IS NULL OR status = %s)
               ORDER BY created_at DESC LIMIT %s""", (webhook_id, status, status, min(max(limit, 1), 1000))).fetchall()
    return [dict(r) for r in rows]
