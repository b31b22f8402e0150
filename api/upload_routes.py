"""HTTP upload producer: ``POST /v1/assets`` (multipart), idempotent on the content's sha256."""

from __future__ import annotations

from fastapi import APIRouter, Depends, File, Form, HTTPException, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from api.deps import require_api_key, settings_of
from producers.ingest import IngestError, Ingestor, Metadata

router = APIRouter(prefix="/v1", tags=["upload"])


class UploadResponse(BaseModel):
    asset_id: str
    duplicate: bool
    content_type: str
    size_bytes: int
    status_url: str


@router.post("/assets", response_model=UploadResponse, status_code=201,
             dependencies=[Depends(require_api_key)],
             responses={200: {"description": "the same content already exists"}, 413: {}, 415: {}})
async def upload(
    request: Request,
    file: UploadFile = File(...),
    title: str | None = Form(None, max_length=1000),
    description: str | None = Form(None, max_length=10000),
    collection: str | None = Form(None, max_length=200),
) -> UploadResponse:
    settings = settings_of(request)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > settings.limits.max_upload_bytes + 64 * 1024:
        raise HTTPException(413, f"upload exceeds the {settings.limits.max_upload_bytes} byte limit")
    ingestor: Ingestor = request.app.state.ingestor
    meta = Metadata(filename=file.filename, title=title, description=description, source="upload",
                    collection=collection)
    try:
        result = await run_in_threadpool(ingestor.ingest_stream, file.file, meta)
    except IngestError as exc:
        raise HTTPException(exc.status, str(exc)) from None
    body = UploadResponse(
        asset_id=result.asset_id,
        duplicate=not result.created,
        content_type=result.content_type,
        size_bytes=result.size_bytes,
        status_url=str(request.url_for("asset_card", asset_id=result.asset_id)),
    )
    if not result.created:
        from fastapi.responses import JSONResponse

        return JSONResponse(body.model_dump(), status_code=200)  # type: ignore[return-value]
    return body
