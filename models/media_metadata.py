"""Embedded metadata as an annotation model without Triton (like pdq): IPTC IIM, XMP and EXIF of a photo, the
container tags of a video, and an XMP sidecar dropped beside the file, normalised to one ``MediaMetadata`` record.

The reader is exiv2 (pyexiv2, which bundles it): a maintained implementation of the three standards and their
character sets. It never fetches anything. Hostile input is screened before exiv2 sees it: an XMP packet larger
than ``MAX_XMP_BYTES`` or one that declares a DTD or entities (billion laughs, external entities) is not parsed;
its EXIF and IPTC are then read by Pillow (binary formats, no XML) and the record carries a warning. Sidecars are
parsed with defusedxml first, which refuses DTDs, entities and external references, and only then read by exiv2.

Every field is cleaned the same way: control characters and invalid UTF-8 are dropped, values are capped,
impossible dates (``0000:00:00``) and out-of-range GPS are dropped with a warning. Markup stays text: nothing here
renders it and the web app shows it with ``textContent``. The asset flows whatever its metadata is like: a
malformed block is a warning on the record, never a failed annotation.

Where a sidecar exists it is the object ``sidecar_key(asset_id)`` (the producer stores it beside the original);
its values win over the embedded ones, as a photo desk edits captions in the sidecar.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from fractions import Fraction
from functools import cached_property
from typing import Any

import numpy as np
from PIL import ExifTags, Image, IptcImagePlugin

from core import video
from core.storage import ObjectStore
from core.triton import TritonClient
from models.base import IMAGE_AND_VIDEO, Item, Model
from schemas.events import AnnotationPayload, Box, ImageRegion, MediaMetadata, MediaUploaded

__all__ = ["MAX_XMP_BYTES", "MediaMetadataModel", "extract", "read_sidecar", "sidecar_key", "xmp_sidecar"]

MAX_XMP_BYTES = 2 * 1024 * 1024  # real packets are a few kB; a camera's with a preview a few hundred
MAX_FIELD_CHARS = 8000
MAX_LIST = 200
RAW_VALUE_CHARS = 300
RAW_TAGS = 400
AI_SOURCE_TYPES = ("trainedalgorithmicmedia", "compositesynthetic", "algorithmicmedia",
                   "compositewithtrainedalgorithmicmedia")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffd]")
_HOSTILE_XML = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_LANG = re.compile(r'^lang="[^"]*"\s*')


def sidecar_key(asset_id: str) -> str:
    """Object key of an asset's XMP sidecar (written by the producers, read here)."""
    return f"sidecars/{asset_id[:2]}/{asset_id}.xmp"


# ------------------------------------------------------------------------------------------------ cleaning
def clean(value: Any) -> str | None:
    """One text value: decoded, without control characters, whitespace collapsed, capped; None when empty."""
    if value is None:
        return None
    if isinstance(value, dict):  # an XMP lang-alt: x-default first
        value = value.get('lang="x-default"') or next(iter(value.values()), None)
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if value is None:
        return None
    text = _CONTROL.sub("", _LANG.sub("", str(value)))
    text = " ".join(text.split())
    return text[:MAX_FIELD_CHARS] or None


def clean_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, dict):
        value = list(value.values())
    if not isinstance(value, list):
        value = value.split(";") if isinstance(value, str) else [value]  # a flat keyword string: "a; b"
    out: list[str] = []
    for v in value[:MAX_LIST]:
        c = clean(v)
        if c and c not in out:
            out.append(c)
    return out


def _first(tags: dict[str, Any], *keys: str) -> str | None:
    for k in keys:
        c = clean(tags.get(k))
        if c:
            return c
    return None


def _first_list(tags: dict[str, Any], *keys: str) -> list[str]:
    for k in keys:
        c = clean_list(tags.get(k))
        if c:
            return c
    return []


# ------------------------------------------------------------------------------------------------ dates, GPS
_DATE_RE = re.compile(r"^(\d{4})[:-]?(\d{2})[:-]?(\d{2})(?:[T ](\d{2}):?(\d{2})(?::?(\d{2})(?:\.\d+)?)?)?\s*"
                      r"(Z|[+-]\d{2}:?\d{2})?$")


def parse_date(text: str | None, offset: str | None = None) -> tuple[str, datetime] | None:
    """(as written in ISO 8601, UTC instant) of an EXIF/IPTC/XMP date; None when absent or impossible.
    Without a zone the local time is taken as UTC (the ISO string then has no offset)."""
    if not text:
        return None
    m = _DATE_RE.match(text.strip())
    if not m:
        raise ValueError(f"unreadable date {text[:40]!r}")
    y, mo, d, hh, mi, ss, tz = m.groups()
    tz = tz or (offset.strip() if offset else None)
    try:
        local = datetime(int(y), int(mo), int(d), int(hh or 0), int(mi or 0), int(ss or 0))
    except ValueError:
        raise ValueError(f"impossible date {text[:40]!r}") from None
    if local.year < 1826:  # the oldest surviving photograph; 0000:00:00 and friends are "unknown"
        raise ValueError(f"impossible date {text[:40]!r}")
    zone: timezone | None = None
    if tz:
        if tz == "Z":
            zone = UTC
        else:
            sign = -1 if tz[0] == "-" else 1
            hhmm = tz[1:].replace(":", "")
            if len(hhmm) != 4 or not hhmm.isdigit() or int(hhmm[:2]) > 14:
                raise ValueError(f"impossible time zone {tz!r}")
            zone = timezone(sign * timedelta(hours=int(hhmm[:2]), minutes=int(hhmm[2:])))
    aware = local.replace(tzinfo=zone) if zone else local.replace(tzinfo=UTC)
    written = local.replace(tzinfo=zone).isoformat() if zone else local.isoformat()
    return written, aware.astimezone(UTC)


def _rational(text: str) -> float:
    num, _, den = text.partition("/")
    return float(Fraction(int(num), int(den or 1)))


def parse_gps(value: Any, ref: Any) -> float | None:
    """EXIF degrees/minutes/seconds rationals ("53/1 33/1 0/1") or XMP "53,33.0N" -> signed degrees."""
    if value is None:
        return None
    text = clean(value) or ""
    ref_s = (clean(ref) or "").upper()
    if "," in text:  # XMP GPSCoordinate: DDD,MM.mmk or DDD,MM,SSk
        ref_s = text[-1].upper() if text[-1].isalpha() else ref_s
        parts = [float(p) for p in text.rstrip("NSEWnsew").split(",")]
    elif isinstance(value, tuple | list):
        parts = [float(p) for p in value]
    else:
        parts = [_rational(p) for p in text.split()]
    deg = sum(p / 60 ** i for i, p in enumerate(parts[:3]))
    return -deg if ref_s in ("S", "W") else deg


# ------------------------------------------------------------------------------------------------ reading
def _xmp_span(data: bytes) -> tuple[int, int] | None:
    start = data.find(b"<x:xmpmeta")
    if start < 0:
        start = data.find(b"<?xpacket begin")
    if start < 0:
        return None
    end = data.find(b"</x:xmpmeta>", start)
    return start, (end + 12 if end >= 0 else len(data))


def screen_xmp(data: bytes) -> str | None:
    """Why the XMP in ``data`` must not be parsed (too large, DTD/entities), or None."""
    span = _xmp_span(data)
    if span is None:
        return None
    start, end = span
    if end - start > MAX_XMP_BYTES:
        return f"XMP packet of {end - start} bytes exceeds {MAX_XMP_BYTES}: not read"
    # a DTD before or inside the packet: entity expansion (billion laughs) or external entities
    if _HOSTILE_XML.search(data, max(0, start - 4096), end):
        return "XMP packet declares a DTD or entities: not read (no entity is ever expanded)"
    return None


def _exiv2_tags(data: bytes, warnings: list[str]) -> dict[str, Any]:
    import pyexiv2

    tags: dict[str, Any] = {}
    with pyexiv2.ImageData(data) as img:
        readers: list[tuple[str, Callable[..., dict[str, Any]]]] = [
            ("EXIF", img.read_exif), ("IPTC", img.read_iptc), ("XMP", img.read_xmp)]
        for name, read in readers:
            try:
                tags.update(read(encoding="utf-8"))
            except UnicodeDecodeError:
                # IPTC 1:90 said UTF-8 (or nothing) but the bytes are not: read them as Latin-1, as writers meant
                warnings.append(f"{name}: not valid UTF-8, read as ISO-8859-1")
                tags.update(read(encoding="iso-8859-1"))
            except (RuntimeError, ValueError) as exc:
                warnings.append(f"{name}: unreadable ({str(exc)[:120]})")
    return tags


def _pillow_tags(data: bytes, warnings: list[str]) -> dict[str, Any]:
    """EXIF and IPTC IIM without any XML parser (the fallback when the XMP packet is hostile)."""
    tags: dict[str, Any] = {}
    try:
        with Image.open(io.BytesIO(data)) as im:
            exif = im.getexif()
            for tag, val in exif.items():
                name = ExifTags.TAGS.get(tag)
                if name in ("Make", "Model", "Orientation", "Artist", "Copyright", "ImageDescription"):
                    tags[f"Exif.Image.{name}"] = str(val)
            for tag, val in exif.get_ifd(ExifTags.IFD.Exif).items():
                name = ExifTags.TAGS.get(tag)
                if name in ("DateTimeOriginal", "OffsetTimeOriginal", "LensModel"):
                    tags[f"Exif.Photo.{name}"] = str(val)
            iptc = IptcImagePlugin.getiptcinfo(im) if im.format == "JPEG" else None
            names = {(2, 5): "ObjectName", (2, 105): "Headline", (2, 120): "Caption", (2, 80): "Byline",
                     (2, 110): "Credit", (2, 115): "Source", (2, 116): "Copyright", (2, 25): "Keywords",
                     (2, 90): "City", (2, 101): "CountryName", (2, 55): "DateCreated", (2, 60): "TimeCreated"}
            for key, val in (iptc or {}).items():
                if key in names:
                    vals = val if isinstance(val, list) else [val]
                    tags[f"Iptc.Application2.{names[key]}"] = [v.decode("utf-8", errors="replace") for v in vals]
    except (OSError, ValueError, SyntaxError) as exc:
        warnings.append(f"EXIF/IPTC: unreadable ({str(exc)[:120]})")
    return tags


def read_sidecar(xmp: bytes, warnings: list[str]) -> dict[str, Any]:
    """The tags of an XMP sidecar; {} with a warning when it is too large, malformed or hostile."""
    import defusedxml.ElementTree as det
    import pyexiv2

    if len(xmp) > MAX_XMP_BYTES:
        warnings.append(f"sidecar of {len(xmp)} bytes exceeds {MAX_XMP_BYTES}: not read")
        return {}
    try:
        det.fromstring(xmp, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except Exception as exc:  # defusedxml's DTD/entity errors and ParseError: all mean "do not read it"
        warnings.append(f"sidecar rejected: {type(exc).__name__}: {str(exc)[:120]}")
        return {}
    try:
        with pyexiv2.ImageData(xmp) as img:
            return dict(img.read_xmp(encoding="utf-8"))
    except (RuntimeError, ValueError, UnicodeDecodeError) as exc:
        warnings.append(f"sidecar unreadable: {str(exc)[:120]}")
        return {}


def _regions(tags: dict[str, Any]) -> list[ImageRegion]:
    """IPTC image regions (rectangles in relative units) from exiv2's flattened XMP keys."""
    out: list[ImageRegion] = []
    for i in range(1, 51):
        pre = f"Xmp.iptcExt.ImageRegion[{i}]/"
        keys = {k[len(pre):]: v for k, v in tags.items() if k.startswith(pre)}
        if not keys:
            break
        b = {k.rsplit(":", 1)[-1]: clean(v) for k, v in keys.items() if "RegionBoundary/" in k}
        box = None
        try:
            if b.get("rbShape") == "rectangle" and b.get("rbUnit") == "relative":
                x, y, w, h = (float(b[k] or "") for k in ("rbX", "rbY", "rbW", "rbH"))
                box = Box(x1=max(0.0, x), y1=max(0.0, y), x2=min(1.0, x + w), y2=min(1.0, y + h))
        except (KeyError, ValueError):
            box = None
        name = next((clean(v) for k, v in keys.items() if k.endswith("Name")), None)
        role = next((clean(v) for k, v in keys.items() if "rRole" in k), None)
        out.append(ImageRegion(name=name, role=role, box=box))
    return out


def _record(tags: dict[str, Any], warnings: list[str], formats: list[str]) -> dict[str, Any]:
    """The normalised fields from exiv2-style keys (Exif.*, Iptc.*, Xmp.*)."""
    x, i, e = "Xmp.", "Iptc.Application2.", "Exif."
    rec: dict[str, Any] = {
        "headline": _first(tags, x + "photoshop.Headline", i + "Headline"),
        "title": _first(tags, x + "dc.title", i + "ObjectName"),
        "caption": _first(tags, x + "dc.description", i + "Caption", e + "Image.ImageDescription"),
        "byline": _first_list(tags, x + "dc.creator", i + "Byline", e + "Image.Artist"),
        "byline_title": _first(tags, x + "photoshop.AuthorsPosition", i + "BylineTitle"),
        "credit": _first(tags, x + "photoshop.Credit", i + "Credit"),
        "source": _first(tags, x + "photoshop.Source", i + "Source"),
        "copyright": _first(tags, x + "dc.rights", i + "Copyright", e + "Image.Copyright"),
        "usage_terms": _first(tags, x + "xmpRights.UsageTerms"),
        "licence_url": _first(tags, x + "xmpRights.WebStatement"),
        "instructions": _first(tags, x + "photoshop.Instructions", i + "SpecialInstructions"),
        "keywords": _first_list(tags, x + "dc.subject", i + "Keywords"),
        "subject_codes": _first_list(tags, x + "iptc.SubjectCode", i + "Subject"),
        "location": _first(tags, x + "iptc.Location", i + "SubLocation"),
        "city": _first(tags, x + "photoshop.City", i + "City"),
        "region": _first(tags, x + "photoshop.State", i + "ProvinceState"),
        "country": _first(tags, x + "photoshop.Country", i + "CountryName"),
        "country_code": _first(tags, x + "iptc.CountryCode", i + "CountryCode"),
        "make": _first(tags, e + "Image.Make"),
        "camera_model": _first(tags, e + "Image.Model"),
        "lens": _first(tags, e + "Photo.LensModel", x + "aux.Lens"),
        "digital_source_type": _first(tags, x + "iptcExt.DigitalSourceType"),
    }
    # date taken: XMP/IPTC creation date (what the photographer set), else the camera's EXIF
    iptc_date = _first(tags, i + "DateCreated")
    if iptc_date and (t := _first(tags, i + "TimeCreated")):
        iptc_date = f"{iptc_date}T{t}"
    candidates = [(_first(tags, x + "photoshop.DateCreated"), None), (iptc_date, None),
                  (_first(tags, e + "Photo.DateTimeOriginal"), _first(tags, e + "Photo.OffsetTimeOriginal"))]
    for text, offset in candidates:
        if not text:
            continue
        try:
            parsed = parse_date(text, offset)
        except ValueError as exc:
            warnings.append(f"date: {exc}")
            continue
        if parsed:
            rec["date_created"], rec["taken_at"] = parsed
            break
    try:
        lat = parse_gps(tags.get(e + "GPSInfo.GPSLatitude") or tags.get(x + "exif.GPSLatitude"),
                        tags.get(e + "GPSInfo.GPSLatitudeRef"))
        lon = parse_gps(tags.get(e + "GPSInfo.GPSLongitude") or tags.get(x + "exif.GPSLongitude"),
                        tags.get(e + "GPSInfo.GPSLongitudeRef"))
        if lat is not None and lon is not None:
            if -90 <= lat <= 90 and -180 <= lon <= 180:
                rec["gps_lat"], rec["gps_lon"] = round(lat, 7), round(lon, 7)
            else:
                warnings.append(f"GPS out of range ({lat:.3f}, {lon:.3f}): dropped")
        if alt := tags.get(e + "GPSInfo.GPSAltitude"):
            sign = -1 if clean(tags.get(e + "GPSInfo.GPSAltitudeRef")) == "1" else 1
            rec["gps_alt"] = sign * _rational(str(alt))
    except (ValueError, ZeroDivisionError, TypeError) as exc:
        warnings.append(f"GPS unreadable: {str(exc)[:80]}")
    if (o := _first(tags, e + "Image.Orientation")) and o.isdigit() and 1 <= int(o) <= 8:
        rec["orientation"] = int(o)
    dst = (rec["digital_source_type"] or "").rsplit("/", 1)[-1].lower()
    rec["ai_generated"] = dst in AI_SOURCE_TYPES
    rec["regions"] = _regions(tags)
    rec["formats"] = formats
    return rec


def _present(tags: dict[str, Any]) -> list[str]:
    return [f for f, pre in (("exif", "Exif."), ("iptc", "Iptc."), ("xmp", "Xmp.")) if any(k.startswith(pre)
                                                                                            for k in tags)]


def _raw(tags: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for k in sorted(tags)[:RAW_TAGS]:
        if k.startswith(("Exif.Thumbnail", "Exif.Photo.MakerNote", "Exif.Image.ExifTag", "Exif.Image.GPSTag")):
            continue
        out[k[:120]] = (clean(tags[k] if not isinstance(tags[k], list) else "; ".join(map(str, tags[k]))) or "")[
            :RAW_VALUE_CHARS]
    return out


_XMP_TEXT = {"headline": "photoshop:Headline", "credit": "photoshop:Credit", "source": "photoshop:Source",
             "city": "photoshop:City", "region": "photoshop:State", "country": "photoshop:Country",
             "instructions": "photoshop:Instructions", "date_created": "photoshop:DateCreated",
             "published": "xmp:CreateDate", "byline_title": "photoshop:AuthorsPosition",
             "licence_url": "xmpRights:WebStatement"}
_XMP_ALT = {"title": "dc:title", "caption": "dc:description", "copyright": "dc:rights",
            "usage_terms": "xmpRights:UsageTerms"}
_XMP_LIST = {"byline": ("dc:creator", "Seq"), "keywords": ("dc:subject", "Bag")}


def xmp_sidecar(fields: dict[str, Any]) -> bytes:
    """An XMP sidecar holding ``fields`` (the record's names: headline, caption, byline, credit, keywords ...;
    ``published``: a feed's publication date, kept as xmp:CreateDate). What producers store beside a file whose
    metadata came with it from elsewhere (a feed entry, an agency document); read back by ``read_sidecar``."""
    from xml.sax.saxutils import escape

    def text(v: Any) -> str:
        return escape(clean(v) or "")

    body: list[str] = []
    for key, tag in _XMP_TEXT.items():
        if clean(fields.get(key)):
            body.append(f"<{tag}>{text(fields[key])}</{tag}>")
    for key, tag in _XMP_ALT.items():
        if clean(fields.get(key)):
            body.append(f'<{tag}><rdf:Alt><rdf:li xml:lang="x-default">{text(fields[key])}</rdf:li></rdf:Alt></{tag}>')
    for key, (tag, kind) in _XMP_LIST.items():
        items = clean_list(fields.get(key))
        if items:
            lis = "".join(f"<rdf:li>{escape(v)}</rdf:li>" for v in items)
            body.append(f"<{tag}><rdf:{kind}>{lis}</rdf:{kind}></{tag}>")
    return ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
            '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/" '
            'xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/" xmlns:xmp="http://ns.adobe.com/xap/1.0/" '
            'xmlns:xmpRights="http://ns.adobe.com/xap/1.0/rights/">'
            + "".join(body) + "</rdf:Description></rdf:RDF></x:xmpmeta>").encode()


def merge_tags(embedded: dict[str, Any], sidecar: dict[str, Any]) -> dict[str, Any]:
    """A sidecar's XMP wins over the file's XMP and the IPTC/EXIF it duplicates (its fields are read first)."""
    return {**embedded, **sidecar}


def extract_image(data: bytes, sidecar: bytes | None = None) -> MediaMetadata:
    warnings: list[str] = []
    why = screen_xmp(data)
    if why is None:
        try:
            tags = _exiv2_tags(data, warnings)
        except (RuntimeError, ValueError, OSError) as exc:  # exiv2 does not know the format: Pillow's view
            warnings.append(f"exiv2: {str(exc)[:120]}")
            tags = _pillow_tags(data, warnings)
    else:
        warnings.append(why)
        tags = _pillow_tags(data, warnings)
    formats = _present(tags)
    if sidecar is not None:
        side = read_sidecar(sidecar, warnings)
        if side:
            formats.append("sidecar")
            # the sidecar's fields first: its XMP keys shadow the embedded XMP, and _record prefers XMP
            tags = merge_tags(tags, side)
    rec = _record(tags, warnings, formats)
    try:
        with Image.open(io.BytesIO(data)) as im:
            rec["width"], rec["height"] = im.size
    except (OSError, ValueError):
        pass
    return MediaMetadata(**rec, warnings=warnings, raw=_raw(tags))


_ISO6709 = re.compile(r"^([+-]\d+(?:\.\d+)?)([+-]\d+(?:\.\d+)?)([+-]\d+(?:\.\d+)?)?/?$")


def extract_video(data: bytes) -> MediaMetadata:
    """A video's container tags: creation time, title, location (ISO 6709), make/model (QuickTime keys)."""
    import av

    warnings: list[str] = []
    tags: dict[str, str] = {}
    try:
        with av.open(io.BytesIO(data), metadata_errors="replace") as c:
            tags = {str(k): str(v) for k, v in c.metadata.items()}
            for s in c.streams:
                for k, v in s.metadata.items():
                    tags.setdefault(str(k), str(v))
            info = video.probe(data)
    except (av.error.FFmpegError, OSError, ValueError) as exc:  # the media itself is the decoders' business
        return MediaMetadata(formats=["container"], warnings=[f"container unreadable: {str(exc)[:120]}"])
    rec: dict[str, Any] = {
        "title": clean(tags.get("title")), "caption": clean(tags.get("description") or tags.get("comment")),
        "byline": clean_list(tags.get("artist") or tags.get("author")), "copyright": clean(tags.get("copyright")),
        "make": clean(tags.get("com.apple.quicktime.make") or tags.get("make")),
        "camera_model": clean(tags.get("com.apple.quicktime.model") or tags.get("model")),
        "keywords": clean_list(tags.get("keywords")),
        "width": info.width or None, "height": info.height or None,
    }
    created = tags.get("com.apple.quicktime.creationdate") or tags.get("creation_time")
    if created:
        try:
            parsed = parse_date(created.replace("Z", "+00:00") if created.endswith("Z") else created)
            if parsed:
                rec["date_created"], rec["taken_at"] = parsed
        except ValueError as exc:
            warnings.append(f"date: {exc}")
    loc = tags.get("com.apple.quicktime.location.ISO6709") or tags.get("location")
    if loc and (m := _ISO6709.match(loc.strip())):
        lat, lon = float(m.group(1)), float(m.group(2))
        if -90 <= lat <= 90 and -180 <= lon <= 180:
            rec["gps_lat"], rec["gps_lon"] = lat, lon
            if m.group(3):  # iPhones write the altitude too: +53.5500+009.9900+012.000/
                rec["gps_alt"] = float(m.group(3))
        else:
            warnings.append("GPS out of range: dropped")
    return MediaMetadata(**rec, formats=["container"], warnings=warnings,
                         raw={k[:120]: (clean(v) or "")[:RAW_VALUE_CHARS] for k, v in sorted(tags.items())[:RAW_TAGS]})


def extract(data: bytes, media_type: str, sidecar: bytes | None = None) -> MediaMetadata:
    return extract_video(data) if media_type == "video" else extract_image(data, sidecar)


def _boxed(obj: Any) -> np.ndarray:
    arr = np.empty((), dtype=object)
    arr[()] = obj
    return arr


class MediaMetadataModel(Model):
    name = "media_metadata"
    head_bytes = 256 * 1024  # a JPEG's EXIF/XMP/IPTC precede its pixels: 3.2 MB of a 24 MP photo are not fetched
    task = "embedded metadata (IPTC IIM, XMP, EXIF, XMP sidecars; video container tags), no Triton"
    version = "media-metadata-1"
    source_package = "pyexiv2 (exiv2, no weights)"
    source_registry = "none"
    licence = "GPL-3.0 (pyexiv2/exiv2)"
    media_types = IMAGE_AND_VIDEO
    outputs = ["PAYLOAD"]
    served_by_triton = False
    max_batch = 64

    @cached_property
    def store(self) -> ObjectStore:
        return ObjectStore(self.settings)

    def sidecar(self, asset_id: str) -> bytes | None:
        key = sidecar_key(asset_id)
        return self.store.get(key) if self.store.exists(key) else None

    def prepare(self, event: MediaUploaded, data: bytes) -> list[Item]:
        sidecar = self.sidecar(event.asset_id) if event.media_type == "image" else None
        return [Item(event, None, {"MEDIA": _boxed(extract(data, event.media_type, sidecar))})]

    def infer(self, triton: TritonClient, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = np.empty(len(inputs["MEDIA"]), dtype=object)
        for k, payload in enumerate(inputs["MEDIA"]):
            out[k] = payload
        return {"PAYLOAD": out}

    def to_payloads(self, outputs: dict[str, np.ndarray], n: int) -> list[AnnotationPayload]:
        return list(outputs["PAYLOAD"][:n])
