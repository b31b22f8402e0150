"""Agency deliveries: IPTC ninjs (JSON, versions 1.x to 3.x) and NewsML-G2 news items (XML) with their media.

A delivery is a document and its renditions in one folder (a drop folder, an FTP upload, an unpacked feed item).
``parse`` reads the document into an ``AgencyItem``: the record fields (names as schemas/events.py MediaMetadata:
headline, caption, byline, credit, copyright, usage terms, keywords, subjects, place, date created), the embargo,
the publication status and the renditions. ``ingest_document`` picks the best picture rendition, resolves it
INSIDE the document's folder (an absolute path, ``..`` or a URL is refused: nothing is fetched) and ingests it
with the record as an XMP sidecar (the media_metadata model reads it) and the embargo in the asset's own
transaction (producers/ingest.py). The item's id (ninjs ``uri``, NewsML-G2 ``guid``) and the asset it delivers are
recorded in ``agency_items`` BEFORE the ingest (core/migrations/0016), so a later notice about the item finds it.

Status notices: a ``canceled`` item kills the assets its earlier versions delivered; a ``withheld`` one holds them
(an embargo without end); the item usable again releases a withhold. The producers' floor cannot change the
lifecycle, so each is a ``LifecycleRequest`` written to the outbox (one transaction for all the item's assets,
deterministic ids: the same notice delivered twice is one request) that sinks/lifecycle_sink.py applies exactly
once, through the API's kill machinery. A ``withheld`` or ``canceled`` item is never ingested itself.

Hostile documents: XML is parsed by defusedxml with DTDs, entities and external references refused (billion
laughs, XXE); the size is capped; unknown fields are ignored (ninjs allows extensions); a document without a usable
rendition is an error naming why; the values are cleaned like embedded metadata (control characters, caps).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element

from core import db, kafka
from models.base import sha256_file
from models.media_metadata import clean, clean_list, xmp_sidecar
from producers.ingest import IngestError, Ingestor, IngestResult, Metadata
from schemas.events import WITHHELD_UNTIL, LifecycleRequest, dump

MAX_DOCUMENT_BYTES = 2 * 1024 * 1024
PUB_STATUS = ("usable", "withheld", "canceled")
# the rendition names agencies use for the full-size picture, best first
PREFERRED = ("original", "highres", "rend:highres", "rend:original", "baseimage", "rend:baseimage", "web",
             "rend:web", "preview", "rend:preview", "thumbnail", "rend:thumbnail")


class AgencyError(IngestError):
    """A document that cannot be read (malformed, hostile, no usable rendition)."""

    status = 422


@dataclass
class Rendition:
    name: str
    href: str
    mimetype: str | None = None
    width: int | None = None
    height: int | None = None


@dataclass
class AgencyItem:
    format: str  # ninjs | newsml
    version: str | None
    uri: str | None
    fields: dict[str, Any]  # the record's fields (MediaMetadata names)
    embargo_until: datetime | None = None
    pub_status: str = "usable"
    renditions: list[Rendition] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _date(value: Any, warnings: list[str], what: str) -> datetime | None:
    if not value:
        return None
    text = str(value).strip().replace("Z", "+00:00")
    try:
        d = datetime.fromisoformat(text)
    except ValueError:
        warnings.append(f"{what}: unreadable date {text[:40]!r}")
        return None
    return d if d.tzinfo else d.replace(tzinfo=UTC)


def _status(value: Any) -> str:
    s = (clean(value) or "usable").lower().rsplit(":", 1)[-1]  # "stat:usable" (NewsML-G2 qcode)
    return s if s in PUB_STATUS else "usable"


# ------------------------------------------------------------------------------------------------ ninjs
def _by_role(values: Any, prefer: str) -> str | None:
    """ninjs 2.x/3.x ``headlines``/``descriptions``: a list of {role, value}; the preferred role, else the first."""
    if isinstance(values, list):
        items = [v for v in values if isinstance(v, dict) and v.get("value")]
        best = next((v for v in items if str(v.get("role", "")).lower() == prefer), items[0] if items else None)
        return clean(best["value"]) if best else None
    return clean(values)


def parse_ninjs(data: bytes) -> AgencyItem:
    if len(data) > MAX_DOCUMENT_BYTES:
        raise AgencyError(f"ninjs document of {len(data)} bytes exceeds {MAX_DOCUMENT_BYTES}")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise AgencyError(f"not a ninjs document (invalid JSON: {str(exc)[:120]})") from None
    if not isinstance(doc, dict):
        raise AgencyError("not a ninjs document (not a JSON object)")
    warnings: list[str] = []
    get = doc.get
    version = clean(get("$schema") or get("ninjsVersion") or get("ninjs_version"))
    rights = get("rightsinfo") or get("rightsInfo") or {}
    rights = rights[0] if isinstance(rights, list) and rights else rights
    rights = rights if isinstance(rights, dict) else {}
    by = get("by") or get("byline")
    people = [p.get("name") for p in (get("people") or []) if isinstance(p, dict) and
              str(p.get("rel", "")).lower() in ("creator", "photographer", "author")]
    subjects = get("subjects") or get("subject") or []
    subjects = [s for s in subjects if isinstance(s, dict)] if isinstance(subjects, list) else []
    places = get("places") or get("place") or []
    place = places[0] if isinstance(places, list) and places and isinstance(places[0], dict) else {}
    fields: dict[str, Any] = {
        "headline": _by_role(get("headlines"), "main") or clean(get("headline")),
        "caption": _by_role(get("descriptions"), "caption") or clean(get("description_text") or get("description")),
        "byline": clean_list(people) or clean_list(by),
        "credit": clean(get("copyrightholder") or rights.get("copyrightholder") or rights.get("copyrightHolder")
                        or get("provider")),
        "copyright": clean(get("copyrightnotice") or rights.get("copyrightnotice") or rights.get("copyrightNotice")),
        "usage_terms": clean(get("usageterms") or rights.get("usageterms") or rights.get("usageTerms")),
        "keywords": clean_list([s.get("name") for s in subjects if s.get("name")] + list(get("keywords") or [])),
        "city": clean(place.get("name")),
        "date_created": clean(get("firstcreated") or get("firstCreated") or get("contentcreated")
                              or get("contentCreated")),
    }
    embargo = _date(get("embargoedUntil") or get("embargoed"), warnings, "embargo")
    renditions: list[Rendition] = []
    raw = get("renditions") or {}
    entries = raw.items() if isinstance(raw, dict) else (  # 1.x/2.x: {name: {...}}; 3.x: [{name, ...}]
        (r.get("name") or f"r{i}", r) for i, r in enumerate(raw) if isinstance(r, dict)) if isinstance(raw, list) \
        else []
    for name, r in entries:
        if isinstance(r, dict) and r.get("href"):
            renditions.append(Rendition(str(name), str(r["href"]), clean(r.get("mimetype") or r.get("contentType")),
                                        _int(r.get("width")), _int(r.get("height"))))
    return AgencyItem("ninjs", version, clean(get("uri") or get("guid")), fields, embargo,
                      _status(get("pubStatus") or get("pubstatus")), renditions, warnings)


def _int(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


# ------------------------------------------------------------------------------------------------ NewsML-G2
_NS = re.compile(r"^\{[^}]*\}")


def _local(el: Element) -> str:
    return _NS.sub("", el.tag) if isinstance(el.tag, str) else ""


def _find(root: Element, *path: str) -> list[Element]:
    """Elements by local names (namespaces vary between G2 versions and agencies)."""
    found = [root]
    for name in path:
        found = [c for el in found for c in el if _local(c) == name]
    return found


def _text_of(els: list[Element]) -> str | None:
    for el in els:
        c = clean("".join(el.itertext()))
        if c:
            return c
    return None


def parse_newsml(data: bytes) -> AgencyItem:
    import defusedxml.ElementTree as det
    from defusedxml import DefusedXmlException

    if len(data) > MAX_DOCUMENT_BYTES:
        raise AgencyError(f"NewsML-G2 document of {len(data)} bytes exceeds {MAX_DOCUMENT_BYTES}")
    try:
        root = det.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise AgencyError(f"NewsML-G2 document refused: {type(exc).__name__} (no DTD or entity is ever read)") \
            from None
    except det.ParseError as exc:
        raise AgencyError(f"not a NewsML-G2 document (malformed XML: {str(exc)[:120]})") from None
    if _local(root) == "newsMessage":
        items = [el for el in root.iter() if _local(el) == "newsItem"]
        if not items:
            raise AgencyError("NewsML-G2 newsMessage without a newsItem")
        root = items[0]
    if _local(root) != "newsItem":
        raise AgencyError(f"not a NewsML-G2 news item (root element {_local(root)!r})")
    warnings: list[str] = []
    meta, content = _find(root, "contentMeta"), _find(root, "itemMeta")
    cm = meta[0] if meta else root
    im = content[0] if content else root
    rights = _find(root, "rightsInfo")
    status_el = _find(im, "pubStatus")
    fields: dict[str, Any] = {
        "headline": _text_of(_find(cm, "headline")),
        "caption": _text_of([d for d in _find(cm, "description") if d.get("role", "drol:caption").endswith(
            ("caption", "summary"))] or _find(cm, "description")),
        "byline": clean_list([_text_of(_find(c, "name")) or c.get("literal") for c in _find(cm, "creator")]
                             or [_text_of(_find(cm, "by"))]),
        "credit": _text_of(_find(cm, "creditline")) or _text_of(_find(rights[0], "copyrightHolder", "name")
                                                                  if rights else []),
        "copyright": _text_of(_find(rights[0], "copyrightNotice")) if rights else None,
        "usage_terms": _text_of(_find(rights[0], "usageTerms")) if rights else None,
        "keywords": clean_list([_text_of(_find(s, "name")) for s in _find(cm, "subject")]
                               + [_text_of([k]) for k in _find(cm, "keyword")]),
        "city": _text_of(_find(cm, "located", "name")),
        "date_created": _text_of(_find(cm, "contentCreated")),
        "instructions": _text_of(_find(im, "edNote")),
    }
    embargo = _date(_text_of(_find(im, "embargoed")), warnings, "embargo")
    renditions = []
    for i, rc in enumerate(el for el in root.iter() if _local(el) == "remoteContent"):
        href = rc.get("href") or rc.get("residref")
        if href:
            renditions.append(Rendition((rc.get("rendition") or f"r{i}").lower(), href, rc.get("contenttype"),
                                        _int(rc.get("width")), _int(rc.get("height"))))
    return AgencyItem("newsml", root.get("version") or root.get("standardversion"), root.get("guid"), fields,
                      embargo, _status(status_el[0].get("qcode") if status_el else None), renditions, warnings)


def parse(data: bytes, name: str = "") -> AgencyItem:
    """A ninjs (JSON) or NewsML-G2 (XML) document, by its first byte."""
    head = data.lstrip()[:1]
    if head == b"{":
        return parse_ninjs(data)
    if head == b"<":
        return parse_newsml(data)
    raise AgencyError(f"{name or 'document'}: neither ninjs (JSON) nor NewsML-G2 (XML)")


# ------------------------------------------------------------------------------------------------ ingest
def best_rendition(item: AgencyItem) -> Rendition:
    pictures = [r for r in item.renditions if not r.mimetype or r.mimetype.startswith(("image/", "video/"))]
    if not pictures:
        raise AgencyError(f"{item.format} item {item.uri or ''}: no picture or video rendition")
    rank = {n: i for i, n in enumerate(PREFERRED)}
    return min(pictures, key=lambda r: (rank.get(r.name.lower(), len(rank)), -((r.width or 0) * (r.height or 0))))


def resolve(folder: Path, href: str) -> Path:
    """The rendition's file inside ``folder``; a URL, an absolute path or an escape from the folder is refused."""
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", href) and not href.startswith("file:"):
        raise AgencyError(f"rendition {href[:200]!r} is remote: agency media must be delivered with the document")
    rel = href.removeprefix("file:").lstrip("/") if href.startswith("file:") else href
    path = (folder / rel).resolve()
    if not path.is_relative_to(folder.resolve()) or Path(rel).is_absolute():
        raise AgencyError(f"rendition {href[:200]!r} is outside the delivery folder")
    if not path.is_file():
        raise AgencyError(f"rendition {href[:200]!r} was not delivered (no such file)")
    return path


@dataclass
class AgencyResult:
    item: AgencyItem
    outcome: str  # ingested | duplicate | withheld | canceled
    ingest: IngestResult | None = None
    requested: list[str] = field(default_factory=list)  # assets a kill / withhold / release was requested for


def ingest_document(ingestor: Ingestor, document: Path, source: str = "agency",
                    collection: str | None = None) -> AgencyResult:
    """Read ``document`` and ingest its best rendition from the same folder, or pass its status notice on (see the
    module docstring)."""
    data = document.read_bytes()[:MAX_DOCUMENT_BYTES + 1]
    item = parse(data, document.name)
    actor = f"{source}:{item.format}"[:1000]
    notice = hashlib.sha256(data).hexdigest()[:16]  # the same document delivered twice: the same request ids
    if item.pub_status != "usable":
        action = "kill" if item.pub_status == "canceled" else "withhold"
        return AgencyResult(item, item.pub_status, requested=request_lifecycle(ingestor, item, action, actor, notice))
    media = resolve(document.parent, best_rendition(item).href)
    fields = {k: v for k, v in item.fields.items() if v not in (None, [], "")}
    meta = Metadata(filename=media.name, title=fields.get("headline"), description=fields.get("caption"),
                    source=actor, collection=collection, embargo_until=item.embargo_until)
    if item.uri:  # before the ingest: a crash in between leaves a record of an asset not there yet, never the reverse
        with db.connect(ingestor.settings) as conn:
            conn.execute("""INSERT INTO agency_items (item_uri, asset_id, format, source) VALUES (%s,%s,%s,%s)
                            ON CONFLICT DO NOTHING""", (item.uri, sha256_file(media), item.format, actor))
    r = ingestor.ingest_path(media, meta, xmp_sidecar(fields) if fields else None)
    requested = request_lifecycle(ingestor, item, "release", actor, notice)  # a withheld item usable again
    return AgencyResult(item, "ingested" if r.created else "duplicate", r, requested)


def request_lifecycle(ingestor: Ingestor, item: AgencyItem, action: str, actor: str, notice: str) -> list[str]:
    """Outbox rows asking sinks/lifecycle_sink.py to kill / withhold / release every asset ``item`` delivered
    (``agency_items``), in one transaction; ids are deterministic (``notice``: the document's hash), so a
    redelivered notice is the same request. A release is only asked for assets a withhold holds."""
    if not item.uri:
        return []
    settings = ingestor.settings
    reason = {"kill": "agency canceled", "withhold": "agency withheld", "release": "agency usable again"}[action]
    with db.connect(settings) as conn, conn.transaction():
        if action == "release":
            rows = conn.execute("""SELECT i.asset_id FROM agency_items i JOIN asset_lifecycle l USING (asset_id)
                                   WHERE i.item_uri=%s AND l.state='active' AND l.embargo_until >= %s
                                   ORDER BY 1""", (item.uri, WITHHELD_UNTIL)).fetchall()
        else:
            rows = conn.execute("SELECT asset_id FROM agency_items WHERE item_uri=%s ORDER BY 1",
                                (item.uri,)).fetchall()
        ids = [r["asset_id"] for r in rows]
        for asset_id in ids:
            req = LifecycleRequest(event_id=f"lcr-{action}-{asset_id[:32]}-{notice}", asset_id=asset_id,
                                   action=action, reason=f"{reason}: {item.uri}"[:2000], actor=actor,  # type: ignore[arg-type]
                                   item_uri=item.uri[:2000])
            conn.execute("""INSERT INTO outbox (event_id, topic, key, payload) VALUES (%s,%s,%s,%s)
                            ON CONFLICT (event_id) DO NOTHING""",
                         (req.event_id, settings.topic(kafka.TOPIC_LIFECYCLE_REQUESTS), asset_id, dump(req)))
        if ids:
            conn.execute("NOTIFY argus_outbox")
    return ids
