"""The REST mirror of the gRPC annotation service (api/grpc_service.py), on the same ``api.annotate.Annotator``.

- ``POST /v1/annotate``: the asset as the request body (raw bytes, or multipart field ``file``) or ``?url=``;
  ``?models=a,b`` (or repeated), ``?ingest=true``, ``?timeout_s=``, ``?filename=``, ``?title=``,
  ``?description=``. Answers every model's result at once (JSON).
- ``POST /v1/annotate/stream``: the same request, answered as NDJSON (``application/x-ndjson``): one
  ``{"event": "asset"}`` line, one ``{"event": "result"}`` line per model as it finishes, then ``{"event": "end"}``
  (or ``{"event": "error", "code": ...}`` when a model fails after the stream began).

Errors before the first byte use the HTTP status of the gRPC code (api.annotate.HTTP_STATUS).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.annotate import HTTP_STATUS, AnnotateError, Annotator
from api.annotate import Request as AnnotateRequest
from api.deps import _principal, require_scope, settings_of
from core import metrics

router = APIRouter(prefix="/v1", tags=["annotate"])


def annotator_of(request: Request) -> Annotator:
    app = request.app
    if getattr(app.state, "annotator", None) is None:
        app.state.annotator = Annotator(settings_of(request))
    return app.state.annotator  # type: ignore[no-any-return]


async def _request(request: Request, url: str | None, models: list[str], ingest: bool, filename: str | None,
                   title: str | None, description: str | None) -> AnnotateRequest:
    if ingest:  # annotate-and-ingest stores the asset: the upload scope, like POST /v1/assets
        principal = _principal(request, request.headers.get("x-api-key"))
        if principal is None or not principal.allows("upload"):
            raise HTTPException(status_code=403, detail="ingest=true needs an API key with the 'upload' scope")
    content: bytes | None = None
    if url is None:
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            form = await request.form()
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise HTTPException(status_code=400, detail="multipart body without a 'file' field")
            content = await upload.read()
            filename = filename or upload.filename
        else:
            content = await request.body()
    names = tuple(n.strip() for part in models for n in part.split(",") if n.strip())
    return AnnotateRequest(content=content, url=url, models=names, filename=filename, ingest=ingest, title=title,
                           description=description, source="api")


def _http_error(exc: AnnotateError) -> HTTPException:
    metrics.ANNOTATE_ERRORS.labels("rest", exc.code).inc()
    return HTTPException(status_code=HTTP_STATUS.get(exc.code, 500), detail={"code": exc.code, "message": exc.message})


@router.post("/annotate", dependencies=[Depends(require_scope("read"))])
async def annotate(request: Request, url: str | None = None, models: list[str] = Query(default=[]),
                   ingest: bool = False, timeout_s: float | None = Query(default=None, gt=0, le=600),
                   filename: str | None = None, title: str | None = None, description: str | None = None
                   ) -> dict[str, Any]:
    """Annotate one asset with one or several models now; nothing is stored unless ``ingest=true``."""
    t0 = time.perf_counter()
    ann = annotator_of(request)
    req = await _request(request, url, models, ingest, filename, title, description)

    def work() -> dict[str, Any]:
        asset, chosen, deadline = ann.begin(req, timeout_s)
        results = ann.annotate(req, asset, chosen, deadline)
        ingested = ann.ingest(req, asset) if req.ingest else False
        return {"asset_id": asset.asset_id, "media_type": asset.media_type, "content_type": asset.content_type,
                "size_bytes": len(asset.data), "results": [r.as_dict() for r in results], "ingested": ingested}

    try:
        out = await run_in_threadpool(work)
    except AnnotateError as exc:
        raise _http_error(exc) from None
    metrics.ANNOTATE_SECONDS.labels("rest").observe(time.perf_counter() - t0)
    return out


@router.post("/annotate/stream", dependencies=[Depends(require_scope("read"))])
async def annotate_stream(request: Request, url: str | None = None, models: list[str] = Query(default=[]),
                          ingest: bool = False, timeout_s: float | None = Query(default=None, gt=0, le=600),
                          filename: str | None = None, title: str | None = None, description: str | None = None
                          ) -> StreamingResponse:
    """The same, answered as NDJSON: each model's result on its own line as soon as it finishes."""
    ann = annotator_of(request)
    req = await _request(request, url, models, ingest, filename, title, description)
    try:  # the asset and the models are checked before the response starts, so they get a real status
        asset, chosen, deadline = await run_in_threadpool(ann.begin, req, timeout_s)
    except AnnotateError as exc:
        raise _http_error(exc) from None

    def lines() -> Iterator[bytes]:  # a sync iterator: Starlette runs it on the thread pool
        yield _line({"event": "asset", "asset_id": asset.asset_id, "media_type": asset.media_type,
                     "content_type": asset.content_type, "size_bytes": len(asset.data),
                     "models": [m.name for m in chosen]})
        try:
            for r in ann.stream(req, asset, chosen, deadline):
                yield _line({"event": "result", **r.as_dict()})
            ingested = ann.ingest(req, asset) if req.ingest else False
        except AnnotateError as exc:
            metrics.ANNOTATE_ERRORS.labels("rest", exc.code).inc()
            yield _line({"event": "error", "code": exc.code, "message": exc.message})
            return
        yield _line({"event": "end", "ingested": ingested})

    return StreamingResponse(lines(), media_type="application/x-ndjson")


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"
