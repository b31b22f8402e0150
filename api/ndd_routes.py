"""Near-duplicate (reverse image/video) search, duplicate groups and NDD index status.

Modes: ``exact`` (the same bytes, or PDQ distance 0), ``near`` (near-duplicates within the
threshold: re-encoded, rescaled, recoloured, overlaid copies; clips cut from a video; with time
ranges; and, through the region and keypoint paths, cropped, bordered, screenshotted, overlaid,
rotated and tilted copies: each match names its ``path``, its ``evidence`` and the shared ``region``
in both pictures) and ``similar`` (NOT duplicates: semantic neighbours from the embedding kNN, delegated to
the search index, kept apart on purpose). The index lives in this process (retrieval/ndd/service.py).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, File, Form, Header, HTTPException, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool

from api.deps import require_scope, settings_of
from core import db
from core.imaging import MediaDecodeError, load_image, to_model_input
from core.settings import Settings
from core.triton import TritonClient
from retrieval.ndd.service import QueryMedia, match_to_dict, shared_service

router = APIRouter(prefix="/v1/ndd", tags=["near-duplicates"])

MODE_PATTERN = "^(exact|near|similar)$"


def _similar_hits(request: Request, asset_id: str | None, vector: list[float] | None, model: str,
                  k: int) -> list[dict[str, Any]]:
    index = request.app.state.index
    hits = index.similar(asset_id, model, k) if asset_id else index.knn(model, vector, k)
    return [{"asset_id": h.asset_id, "media_type": h.media_type, "relation": "similar", "score": round(h.score, 4),
             "filename": h.filename, "labels": h.labels} for h in hits]


def _embed_image(settings: Settings, data: bytes, model: str) -> list[float]:
    """The uploaded picture's embedding through Triton (the same model the pipeline uses)."""
    img = load_image(data, settings.limits.max_image_pixels)
    client = TritonClient(settings)
    try:
        out = client.infer(model, {"IMAGE": to_model_input(img)[None]}, ["EMBEDDING"])
    finally:
        client.close()
    return [float(x) for x in out["EMBEDDING"][0]]


def _answer(request: Request, q: QueryMedia, mode: str, threshold: int | None, exclude: str | None,
            limit: int) -> dict[str, Any]:
    svc = shared_service(settings_of(request))
    matches = svc.search(q, mode, threshold, exclude=exclude)
    return {"mode": mode, "query": {"media_type": q.media_type, "sha256": q.sha256},
            "threshold": 0 if mode == "exact" else (threshold if threshold is not None else (
                settings_of(request).ndd.image_threshold if q.media_type == "image"
                else settings_of(request).ndd.frame_threshold)),
            "total": len(matches), "matches": _named([match_to_dict(m) for m in matches[:limit]], settings_of(request))}


def _named(matches: list[dict[str, Any]], settings: Settings) -> list[dict[str, Any]]:
    """Each match with its asset's file name and title (what a person recognises it by)."""
    if matches:
        with db.connect(settings) as conn:
            names = {r["asset_id"]: r for r in conn.execute(
                "SELECT asset_id, filename, title FROM assets WHERE asset_id = ANY(%s)",
                ([m["asset_id"] for m in matches],)).fetchall()}
        for m in matches:
            row = names.get(m["asset_id"])
            m["filename"], m["title"] = (row["filename"], row["title"]) if row else (None, None)
    return matches


@router.get("/assets/{asset_id}")
async def search_by_asset(
    request: Request, asset_id: str,
    mode: str = Query("near", pattern=MODE_PATTERN),
    threshold: int | None = Query(None, ge=0, le=128, description="max PDQ Hamming distance (default: calibrated)"),
    model: str = Query("efficientnet_lite0", description="embedding model for mode=similar"),
    limit: int = Query(50, ge=1, le=1000),
) -> dict[str, Any]:
    """Near-duplicates (or exact copies, or merely similar assets) of an archived asset."""
    try:
        if mode == "similar":
            hits = await run_in_threadpool(_similar_hits, request, asset_id, None, model, limit)
            return {"mode": mode, "query": {"asset_id": asset_id}, "total": len(hits), "matches": hits}
        svc = shared_service(settings_of(request))
        q = await run_in_threadpool(svc.query_of_asset, asset_id)
        return await run_in_threadpool(_answer, request, q, mode, threshold, asset_id, limit)
    except (LookupError, ValueError) as exc:
        raise HTTPException(404, str(exc)) from None


@router.post("/search")
async def search_by_upload(
    request: Request,
    file: UploadFile = File(..., description="an image or a video (not stored)"),
    mode: str = Form("near", pattern=MODE_PATTERN),
    threshold: int | None = Form(None, ge=0, le=128),
    model: str = Form("efficientnet_lite0"),
    limit: int = Form(50, ge=1, le=1000),
    x_api_key: str | None = Header(default=None),
) -> dict[str, Any]:
    """Reverse search: where else does this picture or footage appear in the archive?"""
    settings = settings_of(request)
    if not getattr(getattr(settings, "security", None), "anonymous_read", True):
        require_scope("read")(request, x_api_key)
    cap = settings.limits.max_upload_bytes
    data = await file.read(cap + 1)
    if not data:
        raise HTTPException(400, "empty upload")
    if len(data) > cap:
        raise HTTPException(413, f"upload exceeds the {cap} byte limit")
    svc = shared_service(settings)
    try:
        q = await run_in_threadpool(svc.hash_upload, data)
        if mode == "similar":
            if q.media_type != "image":
                raise HTTPException(422, "mode=similar takes an image (the embedding kNN is per image)")
            archived = q.sha256 if q.sha256 in svc.matcher.assets else None
            vector = None if archived else await run_in_threadpool(_embed_image, settings, data, model)
            hits = await run_in_threadpool(_similar_hits, request, archived, vector, model, limit)
            return {"mode": mode, "query": {"media_type": q.media_type, "sha256": q.sha256}, "total": len(hits),
                    "matches": hits}
        return await run_in_threadpool(_answer, request, q, mode, threshold, None, limit)
    except MediaDecodeError as exc:
        raise HTTPException(415, f"cannot decode the upload: {exc.reason}") from None
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from None


@router.get("/groups")
async def duplicate_groups(
    request: Request,
    threshold: int | None = Query(None, ge=0, le=128),
    min_size: int = Query(2, ge=2),
    limit: int = Query(100, ge=1, le=10000),
) -> dict[str, Any]:
    """Duplicate groups of the archive: connected components of the near-duplicate graph."""
    svc = shared_service(settings_of(request))
    groups = await run_in_threadpool(svc.groups, threshold, min_size)
    return {"total": len(groups), "groups": [{"size": len(g), "asset_ids": g} for g in groups[:limit]]}


@router.get("/status")
async def ndd_status(request: Request) -> dict[str, Any]:
    return await run_in_threadpool(shared_service(settings_of(request)).status)
