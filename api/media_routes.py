"""Media for display: an asset's renditions (thumbnail, preview, video keyframes) and its original, streamed.

``GET /v1/assets/{id}/renditions/{thumb|preview|frame-<t_ms>}`` streams a JPEG the ``renditions`` model stored
(models/renditions.py); its object key comes from the asset's renditions annotation (the running spec's version
when present, else the newest), looked up once and cached briefly. Renditions are immutable (the key names the spec
and the content's sha256), so they are served with a year's ``Cache-Control`` and an ``ETag``.

``GET /v1/assets/{id}/original`` streams the original itself (never a redirect: the web app's CSP allows only
'self'), with HTTP Range support so that a ``<video>`` element can seek.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from api.deps import settings_of
from core import db
from core.settings import Settings
from core.storage import ObjectMissing, ObjectStore
from models.renditions import Renditions
from sinks import lifecycle

router = APIRouter(prefix="/v1/assets", tags=["assets"])

MODEL = Renditions.name
NAME = re.compile(r"^(thumb|preview|frame-(\d{1,10}))$")
RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
CACHE_S = 30.0  # how long a found renditions payload is reused (new versions appear within this)
CACHE_MAX = 4096


def _not_found(detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=404)


def _cache_control(settings: Settings) -> str:
    return f"{'public' if settings.security.anonymous_read else 'private'}, max-age=31536000, immutable"


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return "*" in tags or etag in tags


def pick_renditions(settings: Settings, rows: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """The renditions payload to show from an asset's ``renditions`` annotation rows (``model_version``,
    ``payload``, ``produced_at``; video-level rows only): the running spec's version, else the newest."""
    rows = [r for r in rows if r.get("keyframe_ms") is None and isinstance(r.get("payload"), dict)]
    if not rows:
        return None
    current = Renditions(settings).model_version
    for r in rows:
        if r["model_version"] == current:
            return dict(r["payload"])
    return dict(max(rows, key=lambda r: r["produced_at"])["payload"])


def card_renditions(asset_id: str, payload: dict[str, Any] | None) -> dict[str, Any] | None:
    """The card's ``renditions`` section: relative URLs of the thumb, the preview and the keyframe strip."""
    if payload is None:
        return None
    base = f"/v1/assets/{quote(asset_id, safe='')}/renditions"
    items = payload.get("items") or []
    names = {i["name"] for i in items}
    frames = sorted(int(i["t_ms"]) for i in items if i["name"] == "frame" and i.get("t_ms") is not None)
    return {"thumb": f"{base}/thumb" if "thumb" in names else None,
            "preview": f"{base}/preview" if "preview" in names else None,
            "frames": [{"t_ms": t, "url": f"{base}/frame-{t}"} for t in frames]}


class _Lookup:
    """asset id -> its renditions payload, cached for CACHE_S (absent ones are not cached: they appear soon)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}

    def get(self, asset_id: str) -> dict[str, Any] | None:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(asset_id)
        if hit is not None and now - hit[0] < CACHE_S:
            return hit[1]
        with db.connect(self.settings) as conn:
            rows = conn.execute(
                "SELECT model_version, keyframe_ms, payload, produced_at FROM annotations "
                "WHERE asset_id=%s AND model=%s AND keyframe_ms IS NULL", (asset_id, MODEL)).fetchall()
        payload = pick_renditions(self.settings, rows)
        if payload is not None:
            with self._lock:
                if len(self._cache) >= CACHE_MAX:
                    self._cache.clear()
                self._cache[asset_id] = (now, payload)
        return payload


def _withheld(request: Request, asset_id: str) -> bool:
    """Killed, deleted or under embargo (docs/metadata.md): its media is not served (read on every request, so a
    kill takes effect at once whatever a cache holds). The desk (upload scope) sees an embargoed asset's media."""
    with db.connect(settings_of(request)) as conn:
        st = lifecycle.state_of(conn, asset_id)
    if st.state != "active":
        return True
    principal = getattr(request.state, "principal", None)  # set by api.security
    return st.embargoed and not (principal is not None and principal.allows("upload"))


def _lookup(request: Request) -> _Lookup:
    state = request.app.state
    lookup: _Lookup | None = getattr(state, "renditions_lookup", None)
    if lookup is None:
        lookup = state.renditions_lookup = _Lookup(settings_of(request))
    return lookup


def _store(request: Request) -> ObjectStore:
    store: ObjectStore | None = getattr(request.app.state, "store", None)
    if store is None:
        store = request.app.state.store = ObjectStore(settings_of(request))
    return store


@router.get("/{asset_id}/renditions/{name}", name="rendition",
            responses={200: {"content": {"image/jpeg": {}}}, 304: {}, 404: {}})
def rendition(request: Request, asset_id: str, name: str) -> Response:
    """A rendition JPEG: ``thumb`` (320 px), ``preview`` (1280 px) or ``frame-<t_ms>`` (a video keyframe, 180 px
    high). Videos' thumb and preview are the poster frame's. 404 while it does not exist (yet)."""
    m = NAME.match(name)
    if m is None:
        return _not_found(f"unknown rendition {name!r}: thumb, preview or frame-<t_ms>")
    if _withheld(request, asset_id):
        return _not_found(f"no asset {asset_id}")
    payload = _lookup(request).get(asset_id)
    if payload is None:
        return _not_found(f"no renditions of asset {asset_id} (yet)")
    kind, t_ms = ("frame", int(m.group(2))) if m.group(2) is not None else (name, None)
    item = next((i for i in payload.get("items") or []
                 if i["name"] == kind and (t_ms is None or i.get("t_ms") == t_ms)), None)
    if item is None:
        return _not_found(f"asset {asset_id} has no rendition {name!r}")
    key: str = item["key"]
    spec = key.split("/")[-2]  # renditions/<id[:2]>/<id>/<spec>/<file>
    settings = settings_of(request)
    headers = {"ETag": f'"{spec}-{asset_id}-{name}"', "Cache-Control": _cache_control(settings),
               "X-Content-Type-Options": "nosniff"}
    if _etag_matches(request.headers.get("if-none-match"), headers["ETag"]):
        return Response(status_code=304, headers=headers)
    try:
        body = _store(request).get_range(key)
    except ObjectMissing:
        return _not_found(f"rendition {name!r} of asset {asset_id} is not in the object store")
    return StreamingResponse(body, media_type="image/jpeg",
                             headers={**headers, "Content-Length": str(item["bytes"])})


def content_disposition(filename: str) -> str:
    """``inline`` with the name RFC 6266/5987-encoded (and a plain ASCII fallback): no quote, CR or LF can get
    into the header whatever the uploaded name was."""
    base = filename.replace("\\", "/").rsplit("/", 1)[-1] or "original"
    fallback = re.sub(r"[^A-Za-z0-9._ -]", "_", base)[:200] or "original"
    return f"inline; filename=\"{fallback}\"; filename*=UTF-8''{quote(base, safe='')}"


def parse_range(header: str | None, size: int) -> tuple[int, int] | None | str:
    """One ``bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` range -> (first, last) inclusive; None: serve it all
    (no header, or one this server ignores: several ranges, another unit, bad syntax); "unsatisfiable": 416."""
    if not header:
        return None
    m = RANGE.match(header.strip().replace(" ", ""))
    if m is None:
        return None
    first, last = m.group(1), m.group(2)
    if first == "" and last == "":
        return None
    if first == "":  # the last n bytes
        n = int(last)
        if n == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - n), size - 1
    a = int(first)
    b = size - 1 if last == "" else min(int(last), size - 1)
    if last != "" and int(last) < a:
        return None  # syntactically invalid: ignored (RFC 9110 14.1.1)
    if a >= size:
        return "unsatisfiable"
    return a, b


@router.get("/{asset_id}/original", name="original",
            responses={200: {"description": "the original bytes"}, 206: {}, 304: {}, 404: {}, 416: {}})
def original(request: Request, asset_id: str) -> Response:
    """The original file, streamed, with Range support (a ``<video>`` seeks with it)."""
    settings = settings_of(request)
    with db.connect(settings) as conn:
        row = conn.execute("SELECT bucket, object_key, content_type, size_bytes, filename FROM assets "
                           "WHERE asset_id=%s", (asset_id,)).fetchone()
    if row is None or _withheld(request, asset_id):
        return _not_found(f"no asset {asset_id}")
    size = int(row["size_bytes"])
    headers = {"Accept-Ranges": "bytes", "ETag": f'"{asset_id}"', "Cache-Control": _cache_control(settings),
               "Content-Disposition": content_disposition(row["filename"]), "X-Content-Type-Options": "nosniff"}
    if _etag_matches(request.headers.get("if-none-match"), headers["ETag"]):
        return Response(status_code=304, headers=headers)
    rng = parse_range(request.headers.get("range"), size)
    if rng == "unsatisfiable":
        return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"})
    store = _store(request)
    try:
        if isinstance(rng, tuple):
            first, last = rng
            body: Iterator[bytes] = store.get_range(row["object_key"], first, last - first + 1, bucket=row["bucket"])
            headers |= {"Content-Range": f"bytes {first}-{last}/{size}", "Content-Length": str(last - first + 1)}
            return StreamingResponse(body, status_code=206, media_type=row["content_type"], headers=headers)
        body = store.get_range(row["object_key"], bucket=row["bucket"])
    except ObjectMissing:
        return _not_found(f"the original of asset {asset_id} is not in the object store")
    return StreamingResponse(body, media_type=row["content_type"], headers={**headers, "Content-Length": str(size)})
