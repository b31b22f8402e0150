"""Search and retrieval API: full text + facets, more-like-this (by asset, by uploaded image, by
region), semantic text, hybrid (reciprocal rank fusion), model versions and projects.

Every endpoint takes the same filters (``SearchFilters``) and answers on whichever backend
``search_backend`` selects. Bad queries get a 400/422 that says what is wrong; a model server that
is down gets a 503, a model with no indexed vectors a 404.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, File, Form, Header, HTTPException, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from api.deps import require_scope, settings_of
from core import db
from models.clip import Clip
from models.registry import get_model
from retrieval.query_embed import EmbedUnavailable, QueryEmbedder, Region
from retrieval.search import projects
from retrieval.search.interface import (
    EXTRA_FACETS,
    FACET_FIELDS,
    Hit,
    NumericRange,
    QueryError,
    SearchIndex,
    SearchQuery,
    SearchResult,
)

router = APIRouter(prefix="/v1", tags=["search"])
projects_router = APIRouter(prefix="/v1/projects", tags=["projects"])

MAX_OFFSET = 9800  # OpenSearch's max_result_window (10,000) minus the largest page
FlagParam = Literal["include", "exclude", "only"]
T = TypeVar("T")


# ------------------------------------------------------------------------------ models
class HitOut(BaseModel):
    asset_id: str
    score: float
    filename: str | None
    title: str | None
    media_type: str | None
    labels: list[str]
    highlight: str | None = None
    uploaded_at: datetime | None = None
    card_url: str


class SearchOut(BaseModel):
    total: int
    limit: int
    offset: int
    next_offset: int | None = Field(description="offset of the next page; null on the last page")
    hits: list[HitOut]
    facets: dict[str, dict[str, int]]


class KnnOut(BaseModel):
    model: str
    k: int
    hits: list[HitOut]


class VectorModelOut(BaseModel):
    model: str
    active_version: str | None
    versions: dict[str, int]
    dim: int | None


class ActivateIn(BaseModel):
    version: str = Field(min_length=1, max_length=200)


class ProjectIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(None, max_length=5000)


class ProjectOut(BaseModel):
    project_id: str
    name: str
    description: str | None
    created_at: datetime
    assets: int


class AssetIdsIn(BaseModel):
    asset_ids: list[str] = Field(min_length=1, max_length=10000)


# ------------------------------------------------------------------------------ helpers
def read_access(request: Request, x_api_key: str | None = Header(default=None)) -> None:
    """POST query endpoints are reads: they need the read scope when anonymous reads are off
    (GET routes are checked by api.security's middleware)."""
    if not settings_of(request).security.anonymous_read:
        require_scope("read")(request, x_api_key)


def _index(request: Request) -> SearchIndex:
    return request.app.state.index  # type: ignore[no-any-return]


def _embedder(request: Request) -> QueryEmbedder:
    emb = getattr(request.app.state, "query_embedder", None)
    if emb is None:
        emb = request.app.state.query_embedder = QueryEmbedder(settings_of(request))
    return emb  # type: ignore[no-any-return]


async def _run(fn: Callable[..., T], *args: Any) -> T:
    """Run a blocking search call; map the backends' errors onto clear HTTP answers."""
    try:
        return await run_in_threadpool(fn, *args)
    except QueryError as exc:
        raise HTTPException(400, str(exc)) from None
    except projects.ProjectError as exc:
        raise HTTPException(exc.status, str(exc)) from None
    except EmbedUnavailable as exc:
        raise HTTPException(503, str(exc)) from None
    except LookupError as exc:
        raise HTTPException(404, str(exc).strip("'\"")) from None


def _hits(request: Request, hits: list[Hit]) -> list[HitOut]:
    return [HitOut(asset_id=h.asset_id, score=round(h.score, 6), filename=h.filename, title=h.title,
                   media_type=h.media_type, labels=h.labels, highlight=h.highlight, uploaded_at=h.uploaded_at,
                   card_url=str(request.url_for("asset_card", asset_id=h.asset_id))) for h in hits]


def _search_out(request: Request, q: SearchQuery, r: SearchResult) -> SearchOut:
    nxt = q.offset + len(r.hits)
    return SearchOut(total=r.total, limit=q.limit, offset=q.offset, hits=_hits(request, r.hits), facets=r.facets,
                     next_offset=nxt if nxt < r.total and r.hits else None)


def _parse_num(spec: str) -> NumericRange:
    parts = spec.split(":")
    if len(parts) != 3:
        raise HTTPException(422, f"num must be 'field:min:max' with min or max empty (got {spec!r})")
    try:
        lo = float(parts[1]) if parts[1] else None
        hi = float(parts[2]) if parts[2] else None
    except ValueError:
        raise HTTPException(422, f"num {spec!r}: min and max must be numbers") from None
    return NumericRange(parts[0], lo, hi)


def search_filters(
    q: Annotated[str | None, Query(max_length=500, description='web-search syntax: words, "a phrase", -not, or')]
    = None,
    media_type: Annotated[str | None, Query(pattern="^(image|video)$")] = None,
    label: Annotated[list[str], Query(description="every label must be present")] = [],  # noqa: B006
    any_label: Annotated[list[str], Query(description="at least one of these labels")] = [],  # noqa: B006
    not_label: Annotated[list[str], Query(description="none of these labels")] = [],  # noqa: B006
    source: str | None = None,
    collection: Annotated[str | None, Query(description="the collection given at ingest")] = None,
    project: Annotated[str | None, Query(description="a project id (POST /v1/projects)")] = None,
    person: Annotated[list[str], Query(description="person id or name; every one must be in the asset (AND)")]
    = [],  # noqa: B006
    any_person: Annotated[list[str], Query(description="person ids or names; at least one (OR)")]
    = [],  # noqa: B006
    uploaded_from: datetime | None = None,
    uploaded_to: Annotated[datetime | None, Query(description="exclusive")] = None,
    face_count_min: Annotated[int | None, Query(ge=0)] = None,
    face_count_max: Annotated[int | None, Query(ge=0)] = None,
    num: Annotated[list[str], Query(description="numeric field range 'field:min:max', e.g. text_lines:1:")]
    = [],  # noqa: B006
    nsfw: FlagParam = "include",
    disturbing: FlagParam = "include",
    sort: Literal["relevance", "newest", "oldest"] = "relevance",
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    facet: Annotated[list[str] | None, Query(description=f"facets to count: {', '.join(FACET_FIELDS + EXTRA_FACETS)}")]
    = None,
) -> SearchQuery:
    numeric = [_parse_num(s) for s in num]
    if face_count_min is not None or face_count_max is not None:
        numeric.append(NumericRange("face_count", face_count_min, face_count_max))
    flags = tuple((k, v) for k, v in (("nsfw", nsfw), ("disturbing", disturbing)) if v != "include")
    query = SearchQuery(text=q, media_type=media_type, labels=tuple(label), any_labels=tuple(any_label),
                        exclude_labels=tuple(not_label), source=source, collection=collection, project=project,
                        persons=tuple(person), any_persons=tuple(any_person),
                        uploaded_from=uploaded_from, uploaded_to=uploaded_to, numeric=tuple(numeric), flags=flags,
                        sort=sort, limit=limit, offset=offset,
                        facets=tuple(facet) if facet is not None else FACET_FIELDS + EXTRA_FACETS)
    try:
        return query.validate()
    except QueryError as exc:
        raise HTTPException(400, str(exc)) from None


Filters = Annotated[SearchQuery, Depends(search_filters)]


def _check_project(request: Request, query: SearchQuery) -> None:
    if query.project is not None:
        projects.get_project(settings_of(request), query.project)  # 404 for an unknown project


# ------------------------------------------------------------------------------ text + facets
@router.get("/search", response_model=SearchOut)
async def search(request: Request, query: Filters) -> SearchOut:
    """Full text over title, description, filename, labels, objects, OCR text and captions, with
    highlights, filters and exact facet counts. Stable order: score (or upload date), then asset id."""
    await _run(_check_project, request, query)
    result = await _run(_index(request).search, query)
    return _search_out(request, query, result)


# ------------------------------------------------------------------------------ more like this
@router.get("/assets/{asset_id}/similar", response_model=list[HitOut])
async def similar(request: Request, asset_id: str, query: Filters, model: str = "efficientnet_lite0",
                  k: Annotated[int, Query(ge=1, le=100)] = 10) -> list[HitOut]:
    """kNN on the asset's embedding (the model's active version), restricted by the filters."""
    await _run(_check_project, request, query)
    hits = await _run(_index(request).similar, asset_id, model, k, query)
    return _hits(request, hits)


async def _image_knn(request: Request, data: bytes, region: Region | None, model: str | None, k: int,
                     query: SearchQuery, exclude: str | None = None) -> KnnOut:
    settings = settings_of(request)
    if len(data) > settings.limits.max_upload_bytes:
        raise HTTPException(413, f"query image exceeds the {settings.limits.max_upload_bytes} byte limit")
    model = model or settings.search.query_embed_model
    await _run(_check_project, request, query)
    vec = await _run(_embedder(request).image, model, data, region)
    hits = await _run(_index(request).knn, model, vec, k, query, exclude)
    return KnnOut(model=model, k=k, hits=_hits(request, hits))


@router.post("/search/image", response_model=KnnOut, dependencies=[Depends(read_access)])
async def search_by_image(
    request: Request, query: Filters, file: Annotated[UploadFile, File(description="the query picture")],
    model: Annotated[str | None, Form()] = None, k: Annotated[int, Form(ge=1, le=100)] = 10,
    box: Annotated[str | None, Form(description="optional region 'x1,y1,x2,y2'")] = None,
    box_units: Annotated[Literal["fraction", "px"], Form()] = "fraction",
) -> KnnOut:
    """More like this picture: its embedding is computed now, through Triton, then kNN."""
    region = await _run(Region.parse, box, box_units) if box else None
    return await _image_knn(request, await file.read(), region, model, k, query)


@router.post("/search/region", response_model=KnnOut, dependencies=[Depends(read_access)])
async def search_by_region(
    request: Request, query: Filters,
    box: Annotated[str, Form(description="'x1,y1,x2,y2' as fractions of the image (or pixels, box_units=px)")],
    file: Annotated[UploadFile | None, File(description="the picture (or give asset_id)")] = None,
    asset_id: Annotated[str | None, Form(description="an archived picture (or upload file)")] = None,
    box_units: Annotated[Literal["fraction", "px"], Form()] = "fraction",
    model: Annotated[str | None, Form()] = None, k: Annotated[int, Form(ge=1, le=100)] = 10,
) -> KnnOut:
    """Region-based retrieval: crop the box, embed it through Triton, kNN over the archive."""
    if (file is None) == (asset_id is None):
        raise HTTPException(400, "give exactly one of file or asset_id")
    region = await _run(Region.parse, box, box_units)
    if asset_id is not None:
        def original() -> bytes:
            with db.connect(settings_of(request)) as conn:
                row = conn.execute("SELECT object_key, bucket, media_type FROM assets WHERE asset_id=%s",
                                   (asset_id,)).fetchone()
            if row is None:
                raise LookupError(f"no asset {asset_id}")
            if row["media_type"] != "image":
                raise QueryError("region search needs an image asset")
            return request.app.state.store.get(row["object_key"], bucket=row["bucket"])  # type: ignore[no-any-return]

        data = await _run(original)
    else:
        assert file is not None
        data = await file.read()
    return await _image_knn(request, data, region, model, k, query)


# ------------------------------------------------------------------------------ semantic + hybrid
@router.get("/search/semantic", response_model=KnnOut)
async def semantic(request: Request, query: Filters, text: Annotated[str, Query(min_length=1, max_length=500)],
                   k: Annotated[int, Query(ge=1, le=100)] = 10) -> KnnOut:
    """Meaning, not words: the MiniLM embedding of ``text`` against the assets' text embeddings
    (labels, faces, OCR, title, description), with the filters."""
    model = settings_of(request).search.text_embed_model
    vec = await _run(_embedder(request).text, text, model)
    hits = await _run(_index(request).knn, model, vec, k, query)
    return KnnOut(model=model, k=k, hits=_hits(request, hits))


@router.get("/search/hybrid", response_model=SearchOut)
async def hybrid(
    request: Request, query: Filters,
    like: Annotated[str | None, Query(description="vector leg: this asset's image embedding "
                                                  "(default: the semantic embedding of q)")] = None,
    model: Annotated[str | None, Query(description="embedding model of the vector leg")] = None,
    depth: Annotated[int, Query(ge=10, le=1000)] = 100,
) -> SearchOut:
    """Full text and kNN fused by reciprocal rank fusion (k=60); both legs honour the filters."""
    settings = settings_of(request)
    if not query.has_text and like is None:
        raise HTTPException(400, "hybrid search needs q (and optionally like=<asset id>)")
    await _run(_check_project, request, query)
    if like is not None:
        model = model or settings.search.query_embed_model
        vec = await _run(_index(request).vector_of, like, model)
        if vec is None:
            raise HTTPException(404, f"asset {like} has no {model} embedding (yet)")
    else:
        model = model or settings.search.text_embed_model
        assert query.text is not None
        vec = await _run(_embedder(request).text, query.text, model)
    result = await _run(_index(request).hybrid, query, model, vec, depth)
    return _search_out(request, query, result)


@router.get("/search/clip", response_model=KnnOut)
async def clip_text_to_image(request: Request, query: Filters,
                             text: Annotated[str, Query(min_length=1, max_length=500)],
                             k: Annotated[int, Query(ge=1, le=100)] = 10) -> KnnOut:
    """Cross-modal text -> image search; only where CLIP weights are configured (none ship in a registry
    package: ARGUS_CLIP__WEIGHTS, docs/models.md), otherwise 501."""
    settings = settings_of(request)
    model = settings.search.clip_model
    try:
        clip = get_model(settings, model)
    except KeyError:
        clip = None
    if not isinstance(clip, Clip):
        raise HTTPException(501, f"cross-modal search needs the {model!r} model (CLIP weights), not installed here")
    if why := clip.unavailable():
        raise HTTPException(501, f"cross-modal search needs the {model!r} model: {why}")
    vec = await _run(clip.embed_text, _embedder(request).triton, text)
    hits = await _run(_index(request).knn, model, vec, k, query)
    return KnnOut(model=model, k=k, hits=_hits(request, hits))


# ------------------------------------------------------------------------------ model versions
@router.get("/search/models", response_model=list[VectorModelOut])
async def vector_models(request: Request) -> list[VectorModelOut]:
    """Embedding models in the index: versions held (vectors per version) and the active one."""
    models = await _run(_index(request).vector_models)
    return [VectorModelOut(model=m.model, active_version=m.active_version, versions=m.versions, dim=m.dim)
            for m in models]


@router.post("/search/models/{model}/activate", dependencies=[Depends(require_scope("admin"))])
async def activate(request: Request, model: str, body: ActivateIn) -> dict[str, Any]:
    """Switch queries to another model version (vectors and labels), without downtime."""
    act = await _run(_index(request).activate_version, model, body.version)
    return {"model": act.model, "version": act.version, "previous": act.previous, "docs_updated": act.docs_updated}


# ------------------------------------------------------------------------------ projects
def _project_out(p: projects.Project) -> ProjectOut:
    return ProjectOut(project_id=p.project_id, name=p.name, description=p.description, created_at=p.created_at,
                      assets=p.assets)


@projects_router.post("", response_model=ProjectOut, status_code=201, dependencies=[Depends(require_scope("upload"))])
async def create_project(request: Request, body: ProjectIn) -> ProjectOut:
    return _project_out(await _run(projects.create_project, settings_of(request), body.name, body.description))


@projects_router.get("", response_model=list[ProjectOut])
async def list_projects(request: Request) -> list[ProjectOut]:
    return [_project_out(p) for p in await _run(projects.list_projects, settings_of(request))]


@projects_router.get("/{project_id}", response_model=ProjectOut)
async def get_project(request: Request, project_id: str) -> ProjectOut:
    return _project_out(await _run(projects.get_project, settings_of(request), project_id))


@projects_router.delete("/{project_id}", status_code=204, dependencies=[Depends(require_scope("upload"))])
async def delete_project(request: Request, project_id: str) -> None:
    await _run(projects.delete_project, settings_of(request), project_id)


@projects_router.post("/{project_id}/assets", response_model=ProjectOut,
                      dependencies=[Depends(require_scope("upload"))])
async def add_assets(request: Request, project_id: str, body: AssetIdsIn) -> ProjectOut:
    """Add assets (idempotent); unknown asset ids are refused as a whole."""
    await _run(projects.add_assets, settings_of(request), project_id, body.asset_ids)
    return _project_out(await _run(projects.get_project, settings_of(request), project_id))


@projects_router.delete("/{project_id}/assets/{asset_id}", status_code=204,
                        dependencies=[Depends(require_scope("upload"))])
async def remove_asset(request: Request, project_id: str, asset_id: str) -> None:
    await _run(projects.remove_asset, settings_of(request), project_id, asset_id)


@projects_router.get("/{project_id}/search", response_model=SearchOut)
async def search_project(request: Request, project_id: str, query: Filters) -> SearchOut:
    """/v1/search restricted to one project."""
    from dataclasses import replace

    query = replace(query, project=project_id)
    await _run(_check_project, request, query)
    return _search_out(request, query, await _run(_index(request).search, query))
