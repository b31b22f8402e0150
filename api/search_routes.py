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
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from api.deps import embedder_of, index_of, require_scope, settings_of
from core import db
from models.clip import Clip
from models.registry import get_model
from retrieval import photo_meta
from retrieval.query_embed import EmbedUnavailable, Region
from retrieval.search import moments as moments_q
from retrieval.search import projects
from retrieval.search.interface import (
    EXTRA_FACETS,
    FACET_FIELDS,
    Hit,
    NumericRange,
    QueryError,
    SearchQuery,
    SearchResult,
)
from schemas.events import facet_label

router = APIRouter(prefix="/v1", tags=["search"])
projects_router = APIRouter(prefix="/v1/projects", tags=["projects"])

MAX_OFFSET = 9800  # OpenSearch's max_result_window (10,000) minus the largest page
FlagParam = Literal["include", "exclude", "only"]
T = TypeVar("T")


# ------------------------------------------------------------------------------ models
class MomentOut(BaseModel):
    """A time in a video or audio file and what matched there (docs/video.md)."""

    asset_id: str
    kind: Literal["speech", "label", "text", "frame"] = Field(
        description="speech: words said; label: a label/object/face shown; text: an OCR line; frame: a similar frame")
    start_ms: int
    end_ms: int
    at: str = Field(description="start as people read it: 00:42, 1:02:03")
    score: float
    text: str = Field("", description="the segment, label or OCR line")
    highlight: str | None = Field(None, description="the segment with the matched words between [[ and ]]")
    language: str | None = None
    model: str | None = None
    seek_url: str = Field(description="the original with a media fragment (#t=seconds): a player starts there")
    page_url: str | None = Field(None, description="the web app's asset page, its player at that time")


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
    rights: dict[str, Any] | None = Field(None, description="credit, byline, copyright, usage terms, embargo "
                                                            "(docs/metadata.md)")
    moments: list[MomentOut] = Field(
        default_factory=list, description="videos/audio with a text query: the best moments (time, what matched)")


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
    recs = photo_meta.records(settings_of(request), [h.asset_id for h in hits])  # one query for the page
    return [HitOut(asset_id=h.asset_id, score=round(h.score, 6), filename=h.filename, title=h.title,
                   media_type=h.media_type, labels=h.labels, highlight=h.highlight, uploaded_at=h.uploaded_at,
                   card_url=str(request.url_for("asset_card", asset_id=h.asset_id)),
                   rights=photo_meta.rights_summary(recs[h.asset_id]) if h.asset_id in recs else None)
            for h in hits]


def _photo_filters(values: dict[str, list[str]], taken_from: datetime | None, taken_to: datetime | None,
                   bbox: str | None) -> tuple[list[str], list[NumericRange]]:
    """Metadata facets as labels, date taken and a GPS bounding box as numeric ranges (docs/metadata.md)."""
    labels = [facet_label(k, v) for k, vs in values.items() for v in vs]
    numeric: list[NumericRange] = []
    if taken_from is not None or taken_to is not None:
        lo = taken_from.timestamp() if taken_from is not None else None
        hi = taken_to.timestamp() if taken_to is not None else None
        numeric.append(NumericRange("taken_at", lo, hi))
    if bbox:
        try:
            west, south, east, north = (float(x) for x in bbox.split(","))
        except ValueError:
            raise HTTPException(422, "bbox must be 'west,south,east,north' in degrees") from None
        if not (-180 <= west <= east <= 180 and -90 <= south <= north <= 90):
            raise HTTPException(422, "bbox: need -180 <= west <= east <= 180 and -90 <= south <= north <= 90")
        numeric += [NumericRange("gps_lat", south, north), NumericRange("gps_lon", west, east)]
    return labels, numeric


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
    media_type: Annotated[str | None, Query(pattern="^(image|video|audio)$")] = None,
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
    byline: Annotated[list[str], Query(description="photographer (metadata byline)")] = [],  # noqa: B006
    credit: Annotated[list[str], Query(description="credit line")] = [],  # noqa: B006
    iptc_source: Annotated[list[str], Query(description="IPTC source (supplier)")] = [],  # noqa: B006
    country: Annotated[list[str], Query()] = [],  # noqa: B006
    city: Annotated[list[str], Query()] = [],  # noqa: B006
    taken_from: Annotated[datetime | None, Query(description="date taken, from (metadata)")] = None,
    taken_to: Annotated[datetime | None, Query(description="date taken, up to (inclusive)")] = None,
    bbox: Annotated[str | None, Query(description="GPS box 'west,south,east,north' in degrees")] = None,
) -> SearchQuery:
    photo_labels, photo_numeric = _photo_filters(
        {"byline": byline, "credit": credit, "iptc_source": iptc_source, "country": country, "city": city},
        taken_from, taken_to, bbox)
    label = [*label, *photo_labels]
    numeric = [_parse_num(s) for s in num] + photo_numeric
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
    result = await _run(index_of(request).search, query)
    out = _search_out(request, query, result)
    timed = [h.asset_id for h in out.hits if h.media_type in ("video", "audio")]
    if query.text and timed:  # where in each video: spoken words, labels, OCR lines (retrieval/search/moments.py)
        found = await _run(_best_moments, request, query.text, timed)
        for h in out.hits:
            h.moments = [_moment_out(request, m) for m in found.get(h.asset_id, [])]
    return out


# ------------------------------------------------------------------------------ moments (docs/video.md)
def _best_moments(request: Request, q: str, asset_ids: list[str]) -> dict[str, list[moments_q.Moment]]:
    with db.connect(settings_of(request)) as conn:
        return moments_q.best_moments(conn, q, asset_ids)


def _moment_out(request: Request, m: moments_q.Moment) -> MomentOut:
    seconds = f"{m.start_ms / 1000:.3f}".rstrip("0").rstrip(".")
    try:
        page: str | None = f"{request.url_for('asset_page', asset_id=m.asset_id)}?t={seconds}"
    except Exception:  # noqa: BLE001 - starlette's NoMatchFound: the web app is not mounted
        page = None
    return MomentOut(asset_id=m.asset_id, kind=m.kind, start_ms=m.start_ms, end_ms=m.end_ms,
                     at=moments_q.clock(m.start_ms), score=round(m.score, 6), text=m.text, highlight=m.highlight,
                     language=m.language, model=m.model,
                     seek_url=f"{request.url_for('original', asset_id=m.asset_id)}#t={seconds}", page_url=page)


class MomentsOut(BaseModel):
    q: str
    moments: list[MomentOut]


@router.get("/moments", response_model=MomentsOut)
async def search_moments(
    request: Request,
    q: Annotated[str, Query(min_length=1, max_length=500, description='words said: words, "a phrase", -not')],
    language: Annotated[str | None, Query(pattern="^[a-z]{2,3}$")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    per_asset: Annotated[int | None, Query(ge=1, le=100)] = None,
) -> MomentsOut:
    """Moments where ``q`` is said, across every video and audio file: each with its time, the segment with the
    matched words highlighted and a seekable URL. Best match first, then earliest."""
    def run() -> list[moments_q.Moment]:
        with db.connect(settings_of(request)) as conn:
            return moments_q.search_speech(conn, q, limit=limit, language=language, per_asset=per_asset)

    found = await _run(run)
    return MomentsOut(q=q, moments=[_moment_out(request, m) for m in found])


class SegmentOut(BaseModel):
    start_ms: int
    end_ms: int
    at: str
    text: str
    language: str | None


class TranscriptOut(BaseModel):
    asset_id: str
    status: str | None = Field(description="ok, silent, no_audio, partial, capped; null: not transcribed (yet)")
    note: str | None = None
    language: str | None = None
    language_probability: float | None = None
    processed_ms: int | None = None
    skipped_ms: int | None = None
    model_version: str | None = None
    segments: list[SegmentOut]


def _transcript(request: Request, asset_id: str) -> TranscriptOut:
    with db.connect(settings_of(request)) as conn:
        if conn.execute("SELECT 1 FROM assets WHERE asset_id=%s", (asset_id,)).fetchone() is None:
            raise LookupError(f"unknown asset {asset_id}")
        segs = moments_q.transcript(conn, asset_id)
        row = conn.execute(
            """SELECT model_version, payload FROM annotations WHERE asset_id=%s AND keyframe_ms IS NULL
               AND payload->>'kind' = 'transcript' ORDER BY produced_at DESC LIMIT 1""", (asset_id,)).fetchone()
    p = row["payload"] if row else {}
    return TranscriptOut(
        asset_id=asset_id, status=p.get("status"), note=p.get("note"), language=p.get("language"),
        language_probability=p.get("language_probability"), processed_ms=p.get("processed_ms"),
        skipped_ms=p.get("skipped_ms"), model_version=row["model_version"] if row else None,
        segments=[SegmentOut(start_ms=s.start_ms, end_ms=s.end_ms, at=moments_q.clock(s.start_ms), text=s.text,
                             language=s.language) for s in segs])


@router.get("/assets/{asset_id}/transcript", response_model=TranscriptOut)
async def transcript(request: Request, asset_id: str) -> TranscriptOut:
    """What is said in a video or audio file, segment by segment, and the transcription's status."""
    return await _run(_transcript, request, asset_id)


def _subtitles(request: Request, asset_id: str, fmt: str) -> str:
    with db.connect(settings_of(request)) as conn:
        if conn.execute("SELECT 1 FROM assets WHERE asset_id=%s", (asset_id,)).fetchone() is None:
            raise LookupError(f"unknown asset {asset_id}")
        segs = moments_q.transcript(conn, asset_id)
    return moments_q.to_webvtt(segs) if fmt == "vtt" else moments_q.to_srt(segs)


@router.get("/assets/{asset_id}/transcript.vtt", response_class=PlainTextResponse)
async def transcript_vtt(request: Request, asset_id: str) -> PlainTextResponse:
    """The transcript as WebVTT subtitles (a <track> for the player)."""
    body = await _run(_subtitles, request, asset_id, "vtt")
    return PlainTextResponse(body, media_type="text/vtt; charset=utf-8")


@router.get("/assets/{asset_id}/transcript.srt", response_class=PlainTextResponse)
async def transcript_srt(request: Request, asset_id: str) -> PlainTextResponse:
    """The transcript as SubRip (.srt) subtitles."""
    body = await _run(_subtitles, request, asset_id, "srt")
    return PlainTextResponse(body, media_type="application/x-subrip; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{asset_id[:16]}.srt"'})


class SemanticMomentsOut(BaseModel):
    text: str
    model: str = Field(description="the text model and version of the vectors")
    moments: list[MomentOut]


@router.get("/moments/semantic", response_model=SemanticMomentsOut)
async def semantic_moments(
    request: Request,
    text: Annotated[str, Query(min_length=1, max_length=500, description="what is meant (a sentence)")],
    language: Annotated[str | None, Query(pattern="^[a-z]{2,3}$")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    per_asset: Annotated[int | None, Query(ge=1, le=100)] = None,
) -> SemanticMomentsOut:
    """Moments whose words MEAN what ``text`` says (MiniLM over transcript segments), not only those that use its
    words: each with its time, cosine score and a seekable URL. Nearest first."""
    settings = settings_of(request)
    model = settings.search.text_embed_model
    vec = await _run(embedder_of(request).text, text, model)
    embed_model = f"{model}:{get_model(settings, model).version}"

    def run() -> list[moments_q.Moment]:
        with db.connect(settings) as conn:
            return moments_q.search_meaning(conn, vec, embed_model, limit=limit, language=language,
                                            per_asset=per_asset)

    found = await _run(run)
    return SemanticMomentsOut(text=text, model=embed_model, moments=[_moment_out(request, m) for m in found])


class FrameMomentsOut(BaseModel):
    model: str
    query_t_ms: int | None
    moments: list[MomentOut]


@router.get("/assets/{asset_id}/moments/similar", response_model=FrameMomentsOut)
async def similar_moments(
    request: Request, asset_id: str, model: str = "efficientnet_lite0",
    t_ms: Annotated[int | None, Query(ge=0, description="the keyframe nearest this time (videos); "
                                                        "images: leave out")] = None,
    k: Annotated[int, Query(ge=1, le=100)] = 10,
    per_asset: Annotated[int, Query(ge=1, le=10)] = 1,
) -> FrameMomentsOut:
    """More like this, by moment: the keyframes (video, time) nearest to a keyframe of this video (or to this
    image's vector), at most ``per_asset`` per video."""
    index = index_of(request)

    def run() -> tuple[int | None, list[moments_q.Moment]]:
        with db.connect(settings_of(request)) as conn:
            found = moments_q.frame_vector(conn, asset_id, model, t_ms)
            if found is not None:
                vec, at = found
                return at, moments_q.similar_frames(conn, model, vec, k=k, exclude=(asset_id, at),
                                                    per_asset=per_asset)
        vector = index.vector_of(asset_id, model)
        if vector is None:
            raise LookupError(f"no {model} vector for asset {asset_id}")
        with db.connect(settings_of(request)) as conn:
            return None, moments_q.similar_frames(conn, model, vector, k=k, per_asset=per_asset)

    at, found = await _run(run)
    return FrameMomentsOut(model=model, query_t_ms=at, moments=[_moment_out(request, m) for m in found])


# ------------------------------------------------------------------------------ more like this
@router.get("/assets/{asset_id}/similar", response_model=list[HitOut])
async def similar(request: Request, asset_id: str, query: Filters, model: str = "efficientnet_lite0",
                  k: Annotated[int, Query(ge=1, le=100)] = 10) -> list[HitOut]:
    """kNN on the asset's embedding (the model's active version), restricted by the filters."""
    await _run(_check_project, request, query)
    hits = await _run(index_of(request).similar, asset_id, model, k, query)
    return _hits(request, hits)


async def _image_knn(request: Request, data: bytes, region: Region | None, model: str | None, k: int,
                     query: SearchQuery, exclude: str | None = None) -> KnnOut:
    settings = settings_of(request)
    if len(data) > settings.limits.max_upload_bytes:
        raise HTTPException(413, f"query image exceeds the {settings.limits.max_upload_bytes} byte limit")
    model = model or settings.search.query_embed_model
    await _run(_check_project, request, query)
    vec = await _run(embedder_of(request).image, model, data, region)
    hits = await _run(index_of(request).knn, model, vec, k, query, exclude)
    out = KnnOut(model=model, k=k, hits=_hits(request, hits))
    videos = [h.asset_id for h in out.hits if h.media_type == "video"]
    if videos:  # "this video, at 00:42": the keyframe of each video hit nearest to the query picture
        frames = await _run(_best_frames, request, model, vec, videos)
        for h in out.hits:
            if h.asset_id in frames:
                h.moments = [_moment_out(request, frames[h.asset_id])]
    return out


def _best_frames(request: Request, model: str, vec: list[float], asset_ids: list[str]) -> dict[str, moments_q.Moment]:
    with db.connect(settings_of(request)) as conn:
        return moments_q.best_frames(conn, model, vec, asset_ids)


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
    vec = await _run(embedder_of(request).text, text, model)
    hits = await _run(index_of(request).knn, model, vec, k, query)
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
        vec = await _run(index_of(request).vector_of, like, model)
        if vec is None:
            raise HTTPException(404, f"asset {like} has no {model} embedding (yet)")
    else:
        model = model or settings.search.text_embed_model
        assert query.text is not None
        vec = await _run(embedder_of(request).text, query.text, model)
    result = await _run(index_of(request).hybrid, query, model, vec, depth)
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
    vec = await _run(clip.embed_text, embedder_of(request).triton, text)
    hits = await _run(index_of(request).knn, model, vec, k, query)
    return KnnOut(model=model, k=k, hits=_hits(request, hits))


# ------------------------------------------------------------------------------ model versions
@router.get("/search/models", response_model=list[VectorModelOut])
async def vector_models(request: Request) -> list[VectorModelOut]:
    """Embedding models in the index: versions held (vectors per version) and the active one."""
    models = await _run(index_of(request).vector_models)
    return [VectorModelOut(model=m.model, active_version=m.active_version, versions=m.versions, dim=m.dim)
            for m in models]


@router.post("/search/models/{model}/activate", dependencies=[Depends(require_scope("admin"))])
async def activate(request: Request, model: str, body: ActivateIn) -> dict[str, Any]:
    """Switch queries to another model version (vectors and labels), without downtime."""
    act = await _run(index_of(request).activate_version, model, body.version)
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
    return _search_out(request, query, await _run(index_of(request).search, query))
