"""Rights and lifecycle of an asset (docs/metadata.md): its metadata record, editing it (with an audit trail),
embargo, kill (withdraw), restore and delete. The work is sinks/lifecycle.py's; these routes check who asks.

Scopes: reading the record needs read access like every GET; editing and embargoes need ``upload`` (the desk);
kill, restore, delete and the lifecycle log need ``admin`` (a legal decision).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from api.deps import actor_of, require_scope, settings_of
from core import db
from retrieval import photo_meta
from sinks import lifecycle

router = APIRouter(prefix="/v1/assets", tags=["rights"])


class MetadataEdit(BaseModel):
    """The fields to change; the others keep what the file (or an earlier edit) says."""

    model_config = ConfigDict(extra="forbid")
    headline: str | None = Field(None, max_length=1000)
    title: str | None = Field(None, max_length=1000)
    caption: str | None = Field(None, max_length=8000)
    byline: list[str] | None = Field(None, max_length=50)
    byline_title: str | None = Field(None, max_length=500)
    credit: str | None = Field(None, max_length=500)
    source: str | None = Field(None, max_length=500)
    copyright: str | None = Field(None, max_length=1000)
    usage_terms: str | None = Field(None, max_length=4000)
    licence_url: str | None = Field(None, max_length=2000)
    instructions: str | None = Field(None, max_length=4000)
    keywords: list[str] | None = Field(None, max_length=200)
    location: str | None = Field(None, max_length=500)
    city: str | None = Field(None, max_length=500)
    region: str | None = Field(None, max_length=500)
    country: str | None = Field(None, max_length=500)
    country_code: str | None = Field(None, max_length=8)


class EmbargoIn(BaseModel):
    until: datetime | None = Field(description="When the asset may be shown (with a time zone); null lifts it")


class ReasonIn(BaseModel):
    reason: str = Field(min_length=1, max_length=2000, description="Why (kept with the tombstone)")


async def _apply(request: Request, asset_id: str, action: lifecycle.Action, **kw: Any) -> dict[str, Any]:
    try:
        done = await run_in_threadpool(lifecycle.apply, settings_of(request), asset_id, action,
                                       actor=actor_of(request), **kw)
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from None
    except lifecycle.LifecycleError as exc:
        raise HTTPException(409, str(exc)) from None
    st = done.state
    return {"asset_id": asset_id, "action": action, "state": st.state, "seq": st.seq,
            "embargo_until": st.embargo_until, "reason": st.reason, "purged": done.purged}


@router.get("/{asset_id}/metadata")
def get_metadata(request: Request, asset_id: str) -> dict[str, Any]:
    """The asset's metadata record (edits applied) with its rights state. (A plain def: FastAPI runs it on its
    thread pool, so the database calls never block the event loop.)"""
    recs = photo_meta.records(settings_of(request), [asset_id])
    rec = recs.get(asset_id)
    with db.connect(settings_of(request)) as conn:
        known = conn.execute("SELECT 1 FROM assets WHERE asset_id=%s", (asset_id,)).fetchone()
    if known is None or rec is None or rec["state"] != "active":
        raise HTTPException(404, f"no asset {asset_id}")
    return rec


@router.patch("/{asset_id}/metadata", dependencies=[Depends(require_scope("upload"))])
async def edit_metadata(request: Request, asset_id: str, body: MetadataEdit) -> dict[str, Any]:
    """Change fields of the record; the audit log keeps who, when and old -> new. Search follows within seconds."""
    fields = body.model_dump(exclude_unset=True)
    if not fields:
        raise HTTPException(422, "nothing to change")
    return await _apply(request, asset_id, "edit", fields=fields)


@router.post("/{asset_id}/embargo", dependencies=[Depends(require_scope("upload"))])
async def embargo(request: Request, asset_id: str, body: EmbargoIn) -> dict[str, Any]:
    """Hide the asset from search, the web app and its media until ``until``; it reappears by itself then."""
    if body.until is not None and body.until.tzinfo is None:
        raise HTTPException(422, "until needs a time zone (e.g. 2026-05-01T09:00:00Z)")
    return await _apply(request, asset_id, "embargo", embargo_until=body.until)


@router.post("/{asset_id}/kill", dependencies=[Depends(require_scope("admin"))])
async def kill(request: Request, asset_id: str, body: ReasonIn) -> dict[str, Any]:
    """Withdraw the asset now: gone from search, near-duplicates, people, renditions and the web app; a tombstone
    with the reason stays. A re-upload of the same bytes stays killed until an admin restores it."""
    return await _apply(request, asset_id, "kill", reason=body.reason)


@router.post("/{asset_id}/restore", dependencies=[Depends(require_scope("admin"))])
async def restore(request: Request, asset_id: str, body: ReasonIn) -> dict[str, Any]:
    """Undo a kill: the original comes back from quarantine and every model annotates it again."""
    return await _apply(request, asset_id, "restore", reason=body.reason)


@router.delete("/{asset_id}", dependencies=[Depends(require_scope("admin"))])
async def delete(request: Request, asset_id: str, reason: str) -> dict[str, Any]:
    """Delete (e.g. a legal takedown): original, renditions, annotations, vectors, hashes, index entries."""
    return await _apply(request, asset_id, "delete", reason=reason)


@router.get("/{asset_id}/lifecycle", dependencies=[Depends(require_scope("admin"))])
def lifecycle_log(request: Request, asset_id: str) -> dict[str, Any]:
    """The asset's state and its audit trail (who, when, what). (Plain def: runs on the thread pool.)"""
    with db.connect(settings_of(request)) as conn:
        st = lifecycle.state_of(conn, asset_id)
        log = conn.execute("SELECT seq, action, reason, actor, detail, at FROM asset_lifecycle_log "
                           "WHERE asset_id=%s ORDER BY seq", (asset_id,)).fetchall()
    return {"asset_id": asset_id, "state": st.state, "embargo_until": st.embargo_until, "reason": st.reason,
            "seq": st.seq, "log": [dict(r) for r in log]}
