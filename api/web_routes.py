"""The newsroom web app: server-rendered pages (Jinja2, autoescaped) with a little JavaScript (api/static/app.js).

Pages are plain GET URLs carrying the whole query, so a search is shareable and the back button works; the
browser talks to the same JSON API as every other client (/v1/...). Why this stack: docs/ui.md.
Every page is served under a strict Content-Security-Policy: scripts and styles only from /static, no inline
script, no eval, no other origin; user text (file names, titles, OCR, captions) is only ever escaped text.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape

from api.cards import load_card
from api.deps import embedder_of, index_of, settings_of
from api.search_routes import search_filters
from api.security import KEY_COOKIE, principal_of
from core import db
from core.auth import Principal
from core.settings import Settings
from models.registry import all_models, enabled_models, unavailable_models
from retrieval import photo_meta
from retrieval.people import queries as people
from retrieval.query_embed import EmbedUnavailable
from retrieval.search import moments as moments_q
from retrieval.search import projects
from retrieval.search.interface import (
    EXTRA_FACETS,
    FACET_FIELDS,
    PEOPLE_FACETS,
    PHOTO_FACETS,
    Hit,
    QueryError,
    SearchIndex,
    SearchQuery,
    SearchResult,
)

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=HERE / "templates")

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; media-src 'self'; "
       "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
PAGE_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "same-origin", "Cache-Control": "no-store"}
PAGE_SIZE = 48
# a photo's metadata facets in the sidebar (docs/metadata.md); a click filters on the prefixed label
WEB_PHOTO_FACETS = ("credit", "byline", "country", "city", "taken_month")
MODES = ("text", "semantic", "hybrid")
SESSION_S = 12 * 3600
_B = re.compile(r"(</?b>)")


# ------------------------------------------------------------------------------ helpers
def _url(path: str, params: dict[str, Any], **changes: Any) -> str:
    """``path?params`` with ``changes`` applied (None removes a key; page resets unless changed)."""
    merged = {k: v for k, v in params.items() if k != "page"}
    merged.update(changes)
    clean = {k: v for k, v in merged.items() if v not in (None, "", [], ())}
    return path + ("?" + urlencode(clean, doseq=True) if clean else "")


def _toggle(values: list[str], value: str) -> list[str]:
    return [v for v in values if v != value] if value in values else [*values, value]


def _highlight(text: str) -> Markup:
    """A search highlight (matches between <b>..</b>) as escaped text with <mark> around the matches only."""
    parts = _B.split(text)
    out = Markup("")
    for part in parts:
        if part in ("<b>", "</b>"):
            out += Markup("<mark>" if part == "<b>" else "</mark>")
        else:
            out += escape(part)
    return out if parts.count("<b>") == parts.count("</b>") else escape(_B.sub("", text))


templates.env.globals.update(url=_url, toggle=_toggle, photo_facets=WEB_PHOTO_FACETS)
# a result's labels without the prefixed facet labels ("credit:afp": shown as the credit, counted in its facet)
templates.env.filters["plain_labels"] = lambda labels: [lb for lb in labels if lb.partition(":")[0] not in PHOTO_FACETS]
templates.env.filters["highlight"] = _highlight
templates.env.filters["clock"] = moments_q.clock
# a moment's snippet marks its matches with [[ ]] (retrieval/search/moments.py): shown like search highlights
templates.env.filters["moment_hl"] = lambda t: _highlight(t.replace("[[", "<b>").replace("]]", "</b>"))
templates.env.filters["pretty"] = lambda v: json.dumps(v, indent=2, ensure_ascii=False, default=str)
templates.env.filters["when"] = lambda d: d.strftime("%Y-%m-%d %H:%M") if isinstance(d, datetime) else ""
templates.env.filters["kb"] = lambda n: f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


def _can(request: Request, scope: str) -> bool:
    principal: Principal | None = principal_of(request)
    if scope == "read" and settings_of(request).security.anonymous_read:
        return True
    return principal is not None and principal.allows(scope)


def _page(request: Request, template: str, status: int = 200, **ctx: Any) -> Response:
    principal: Principal | None = principal_of(request)
    ctx.update(request=request, principal=principal, can_write=_can(request, "upload"),
               path=request.url.path, next_url=str(request.url.path) + (f"?{request.url.query}" if request.url.query
                                                                       else ""))
    return templates.TemplateResponse(request, template, ctx, status_code=status, headers=PAGE_HEADERS)


def _needs_login(request: Request) -> Response | None:
    """Pages are reads: without anonymous read, a visitor without a read key is sent to the login."""
    if _can(request, "read"):
        return None
    nxt = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(_url("/login", {"next": nxt}), status_code=303)


def expected_models(settings: Settings) -> dict[str, list[str]]:
    """The models that report a state for every new asset, by media type (the upload page's chips)."""
    gone = unavailable_models(settings, enabled_models(settings))
    models = {m.name: m for m in all_models(settings)}
    out: dict[str, list[str]] = {"image": [], "video": [], "audio": []}
    for name in enabled_models(settings):
        if name in gone or name not in models:
            continue
        model = models[name]
        for media in out:  # a model fed by the others' annotations (text_embed) reports on every asset
            if media in model.media_types or model.consumes == "annotations":
                out[media].append(name)
    return out


def _nsfw_of(index: SearchIndex, hits: list[Hit]) -> set[str]:
    """The hits flagged NSFW (blurred until clicked)."""
    if not hits:
        return set()
    flagged = index.search(SearchQuery(asset_ids=tuple(h.asset_id for h in hits), flags=(("nsfw", "only"),),
                                       limit=len(hits), facets=()))
    return {h.asset_id for h in flagged.hits}


def _day(text: str | None, end: bool = False) -> datetime | None:
    if not text:
        return None
    try:
        d = date.fromisoformat(text)
    except ValueError:
        raise QueryError(f"dates look like 2026-12-04 (got {text[:20]!r})") from None
    return datetime.combine(d + timedelta(days=1) if end else d, time(), tzinfo=UTC)


# ------------------------------------------------------------------------------ search page
def _search(request: Request, params: dict[str, Any], page: int) -> dict[str, Any]:
    settings = settings_of(request)
    index = index_of(request)
    mode = params.get("mode") or "text"
    if mode not in MODES:
        raise QueryError(f"mode must be one of {', '.join(MODES)}")
    face = {"0": (0, 0), "1": (1, 1), "2-5": (2, 5), "6+": (6, None)}.get(params.get("faces") or "", (None, None))
    query = search_filters(
        q=params.get("q") or None, media_type=params.get("media_type") or None, label=params["label"],
        source=params.get("source") or None, collection=params.get("collection") or None,
        project=params.get("project") or None, person=params["person"], any_person=[],
        uploaded_from=_day(params.get("from")),
        uploaded_to=_day(params.get("to"), end=True), face_count_min=face[0], face_count_max=face[1],
        nsfw=params.get("nsfw") or "include", sort=params.get("sort") or "relevance", limit=PAGE_SIZE,
        offset=(page - 1) * PAGE_SIZE, num=[], any_label=[], not_label=[], disturbing="include",
        facet=[*FACET_FIELDS, *EXTRA_FACETS, *WEB_PHOTO_FACETS,
               *(PEOPLE_FACETS if settings.search_backend == "postgres" else ())])
    project = projects.get_project(settings, query.project) if query.project else None
    note = None
    if mode == "text" or not query.has_text:
        result = index.search(query)
    else:
        model = settings.search.text_embed_model
        assert query.text is not None
        try:
            vec = embedder_of(request).text(query.text, model)
        except EmbedUnavailable as exc:
            raise QueryError(f"{mode} search is unavailable right now: {exc}") from None
        if mode == "hybrid":
            result = index.hybrid(query, model, vec)
        else:  # kNN has no total or facets: the nearest PAGE_SIZE, filters applied
            hits = index.knn(model, vec, min(100, PAGE_SIZE), query)
            result = SearchResult(total=len(hits), hits=hits)
            note = "Meaning search ranks the nearest assets; facets count word search only."
    ids = list(result.facets.get("persons", {})) + list(params["person"])
    timed = [h.asset_id for h in result.hits if h.media_type in ("video", "audio")]
    found_moments: dict[str, list[moments_q.Moment]] = {}
    if query.text and timed:  # where in each video the words are said or the thing is shown (docs/video.md)
        with db.connect(settings) as conn:
            found_moments = moments_q.best_moments(conn, query.text, timed)
    return {"result": result, "moments": found_moments, "nsfw": _nsfw_of(index, result.hits), "project": project,
            "note": note,
            "rights": {a: photo_meta.rights_summary(r)
                       for a, r in photo_meta.records(settings, [h.asset_id for h in result.hits]).items()},
            "pages": max(1, -(-min(result.total, 9800) // PAGE_SIZE)),
            "names": people.person_names(settings, ids) if ids else {}}


@router.get("/", response_class=HTMLResponse)
async def search_page(request: Request) -> Response:
    if (redirect := _needs_login(request)) is not None:
        return redirect
    qp = request.query_params
    params: dict[str, Any] = {k: qp.get(k) for k in ("q", "mode", "media_type", "source", "collection", "project",
                                                     "from", "to", "faces", "nsfw", "sort")}
    params["label"] = qp.getlist("label")
    params["person"] = qp.getlist("person")
    try:
        page = max(1, min(int(qp.get("page") or 1), 200))
    except ValueError:
        page = 1
    error = None
    found: dict[str, Any] = {"result": SearchResult(0, []), "nsfw": set(), "project": None, "note": None, "pages": 1,
                             "names": {}, "rights": {}, "moments": {}}
    try:
        found = await run_in_threadpool(_search, request, params, page)
    except HTTPException as exc:
        error = str(exc.detail)
    except (QueryError, LookupError, projects.ProjectError) as exc:
        error = str(exc).strip("'\"")
    status = 400 if error else 200
    return _page(request, "search.html", status, params=params, page=page, error=error, **found)


# ------------------------------------------------------------------------------ asset page
def _overlays(card: dict[str, Any]) -> list[dict[str, Any]]:
    """Boxes to draw over the picture: [{model, kind, t (keyframe ms or null), label, box [x1,y1,x2,y2]}]."""
    out: list[dict[str, Any]] = []
    for ann in card["annotations"]:
        p, t = ann["payload"], ann["keyframe_ms"]
        if not isinstance(p, dict):
            continue
        items: list[tuple[str, dict[str, Any]]] = []
        if p.get("kind") == "face_detection":
            items = [(f"face {f['score']:.2f}", f["box"]) for f in p.get("faces", [])]
        elif p.get("kind") == "object_detection":
            items = [(f"{o['label']} {o['score']:.2f}", o["box"]) for o in p.get("objects", [])]
        elif p.get("kind") == "ocr_text":
            items = [(line["text"], line["box"]) for line in p.get("lines", [])]
        elif p.get("kind") == "face_descriptors":
            items = [(f"face {f['score']:.2f}", f["box"]) for f in p.get("faces", [])]
        elif p.get("kind") == "nsfw":
            items = [(f"{r['label']} {r['score']:.2f}", r["box"]) for r in p.get("regions", [])]
        for label, b in items:
            out.append({"model": ann["model"], "t": t, "label": label, "box": [b["x1"], b["y1"], b["x2"], b["y2"]]})
    return out


def _asset_context(request: Request, asset_id: str) -> dict[str, Any] | None:
    settings = settings_of(request)
    # the desk (upload scope) sees an embargoed asset, with its embargo; a killed or deleted one nobody sees here
    card = load_card(settings, asset_id, include_hidden=_can(request, "upload"))
    if card is None or card["lifecycle"]["state"] != "active":
        return None
    media = card["asset"]["media_type"]
    expected = expected_models(settings).get(media, [])
    states = {m["model"]: m for m in card["models"]}
    models = [states.get(name, {"model": name, "status": "pending", "reason": None, "model_version": None})
              for name in expected] + [m for name, m in states.items() if name not in expected]
    try:
        similar = index_of(request).similar(asset_id, settings.search.query_embed_model, 12)
    except LookupError:
        similar = []
    try:
        project_list = projects.list_projects(settings) if _can(request, "upload") else []
    except Exception:  # noqa: BLE001 - the page works without the project picker
        project_list = []
    flagged = any(isinstance(a["payload"], dict) and a["payload"].get("kind") == "nsfw" and a["payload"].get("nsfw")
                  for a in card["annotations"])
    transcript = next((a["payload"] for a in card["annotations"] if a["keyframe_ms"] is None
                       and isinstance(a["payload"], dict) and a["payload"].get("kind") == "transcript"), None)
    return {"card": card, "asset": card["asset"], "models": models, "similar": similar, "projects": project_list,
            "transcript": transcript,
            "overlays": _overlays(card), "nsfw": flagged, "expected": expected,
            "faces": people.asset_faces(settings, asset_id)}


@router.get("/asset/{asset_id}", response_class=HTMLResponse)
async def asset_page(request: Request, asset_id: str) -> Response:
    if (redirect := _needs_login(request)) is not None:
        return redirect
    ctx = await run_in_threadpool(_asset_context, request, asset_id)
    if ctx is None:
        return _page(request, "message.html", 404, title="Not found", message=f"There is no asset {asset_id}.")
    return _page(request, "asset.html", **ctx)


# ------------------------------------------------------------------------------ by example, upload, projects
@router.get("/example", response_class=HTMLResponse)
async def example_page(request: Request) -> Response:
    return _needs_login(request) or _page(request, "example.html")


@router.get("/upload", response_class=HTMLResponse)
async def upload_page(request: Request) -> Response:
    if (redirect := _needs_login(request)) is not None:
        return redirect
    settings = settings_of(request)
    return _page(request, "upload.html", expected=await run_in_threadpool(expected_models, settings),
                 max_bytes=settings.limits.max_upload_bytes)


@router.get("/projects", response_class=HTMLResponse)
async def projects_page(request: Request) -> Response:
    if (redirect := _needs_login(request)) is not None:
        return redirect
    found = await run_in_threadpool(projects.list_projects, settings_of(request))
    return _page(request, "projects.html", projects=found)


# ------------------------------------------------------------------------------ people
@router.get("/people", response_class=HTMLResponse)
async def people_page(request: Request) -> Response:
    if (redirect := _needs_login(request)) is not None:
        return redirect
    show_all = request.query_params.get("all") == "1"
    name = (request.query_params.get("name") or "").strip()[:200] or None
    found = await run_in_threadpool(lambda: people.list_persons(settings_of(request), min_faces=1 if show_all else 2,
                                                    name=name, include_hidden=show_all, limit=300))
    return _page(request, "people.html", found=found, show_all=show_all, name=name)


@router.get("/people/{person_id}", response_class=HTMLResponse)
async def person_page(request: Request, person_id: str) -> Response:
    if (redirect := _needs_login(request)) is not None:
        return redirect
    person = await run_in_threadpool(lambda: people.get_person(settings_of(request), person_id, limit=500))
    if person is None:
        return _page(request, "message.html", 404, title="Not found", message=f"There is no person {person_id}.")
    others = await run_in_threadpool(lambda: people.list_persons(settings_of(request), min_faces=1, limit=300))
    return _page(request, "person.html", person=person,
                 others=[p for p in others["persons"] if p["person_id"] != person_id])


# ------------------------------------------------------------------------------ login
def _safe_next(nxt: str | None) -> str:
    """Only a path on this site (never //other.host or a scheme): no open redirect."""
    if nxt and nxt.startswith("/") and not nxt.startswith("//") and "\\" not in nxt:
        return nxt
    return "/"


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, next: str | None = None) -> Response:  # noqa: A002 - the query's name
    return _page(request, "login.html", nxt=_safe_next(next), error=None)


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, key: str = Form(..., max_length=200), next: str = Form("/")) -> Response:  # noqa: A002
    keys = request.app.state.keys
    principal = await run_in_threadpool(keys.authenticate, key.strip())
    if principal is None:
        return _page(request, "login.html", 401, nxt=_safe_next(next), error="That API key is not valid.")
    resp = RedirectResponse(_safe_next(next), status_code=303)
    resp.set_cookie(KEY_COOKIE, key.strip(), max_age=SESSION_S, httponly=True, samesite="strict",
                    secure=request.url.scheme == "https", path="/")
    return resp


@router.post("/logout")
async def logout() -> Response:
    resp = RedirectResponse("/", status_code=303)
    resp.delete_cookie(KEY_COOKIE, path="/")
    return resp

