"""The one way media enters Argus, shared by every producer (HTTP, bulk import, watch folder, feeds).

1. The content type is sniffed from the bytes (never trusted from the extension or the client).
2. The sha256 is the asset id: the same content uploaded twice is one asset (idempotent).
3. The original goes to the object store under its content address; a large image also gets its working copy,
   decoded once for every model that looks at fewer pixels (producers/working_copy.py), named by the event.
4. The asset row and the outbox row (the ``media.uploaded`` event) commit in ONE PostgreSQL
   transaction; the relay publishes the outbox to Kafka, so an upload accepted while the broker
   is down is not lost.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import BinaryIO

from core import db
from core.kafka import TOPIC_LIFECYCLE, TOPIC_UPLOADED
from core.settings import Settings
from core.storage import ObjectStore
from models.media_metadata import sidecar_key
from producers.working_copy import make_working_copy, working_side
from schemas.events import MediaLifecycle, MediaUploaded, WorkingCopy, dump

CHUNK = 1024 * 1024


class IngestError(Exception):
    """An upload that is refused; ``status`` is the HTTP status the API answers with."""

    status = 400


class TooLarge(IngestError):
    status = 413


class UnsupportedMedia(IngestError):
    status = 415


class EmptyUpload(IngestError):
    status = 400


def sniff_content_type(head: bytes) -> str | None:
    """Content type from magic numbers; None when it is not a media type we know."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "image/tiff"
    if head[:2] == b"BM" and len(head) >= 26:
        return "image/bmp"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand == b"qt  ":
            return "video/quicktime"
        if brand in (b"avif", b"avis"):
            return "image/avif"
        if brand in (b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1"):  # HEIF stills (iPhone photos)
            return "image/heic"
        if brand in (b"M4A ", b"M4B "):
            return "audio/mp4"
        return "video/mp4"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio/wav"
    if head.startswith(b"fLaC"):
        return "audio/flac"
    if head.startswith(b"OggS"):
        return "audio/ogg"
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0
                                   and head[1] & 0x06 != 0):  # ID3 tag, or an MPEG audio frame sync (layer I-III)
        return "audio/mpeg"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video/webm" if b"webm" in head[:64] else "video/x-matroska"
    return None


def media_type_of(content_type: str) -> str:
    if content_type.startswith("audio/"):
        return "audio"
    return "video" if content_type.startswith("video/") else "image"


def clean_filename(name: str | None) -> str:
    """A display name only (objects are stored by hash): strip paths, control chars, cap length."""
    base = os.path.basename((name or "").replace("\\", "/"))
    base = "".join(ch for ch in unicodedata.normalize("NFC", base) if unicodedata.category(ch)[0] != "C")
    base = base.strip().lstrip(".") or "upload"
    return base[:255]


@dataclass(frozen=True)
class IngestResult:
    asset_id: str
    created: bool  # False: the same content was already in the archive
    content_type: str
    size_bytes: int


@dataclass(frozen=True)
class Metadata:
    filename: str | None = None
    title: str | None = None
    description: str | None = None
    source: str | None = None
    collection: str | None = None
    # an agency's embargo (docs/metadata.md): recorded in the asset's own transaction, so the asset is never
    # visible before its time, not even for the moment between the upload and an embargo call
    embargo_until: datetime | None = None


class Ingestor:
    def __init__(self, settings: Settings, store: ObjectStore | None = None) -> None:
        self.settings = settings
        self.store = store or ObjectStore(settings)

    @cached_property
    def working_side(self) -> int | None:
        """The side of the working copies this installation makes (None: none; producers/working_copy.py)."""
        return working_side(self.settings) if self.settings.processor.working_copy else None

    # -- entry points -------------------------------------------------------------------
    def ingest_bytes(self, data: bytes, meta: Metadata, sidecar: bytes | None = None) -> IngestResult:
        import io

        return self.ingest_stream(io.BytesIO(data), meta, sidecar)

    def ingest_path(self, path: Path, meta: Metadata, sidecar: bytes | None = None) -> IngestResult:
        with open(path, "rb") as fh:
            return self.ingest_stream(fh, meta, sidecar)

    def ingest_stream(self, stream: BinaryIO, meta: Metadata, sidecar: bytes | None = None) -> IngestResult:
        """Spool to a temp file while hashing and enforcing the size cap, then store and record. ``sidecar``: an
        XMP packet with metadata that came with the file (a feed entry, an agency document, a ``.xmp`` beside it),
        stored beside a new asset before its upload event exists (models/media_metadata.py reads it)."""
        limit = self.settings.limits.max_upload_bytes
        h = hashlib.sha256()
        size = 0
        with tempfile.SpooledTemporaryFile(max_size=32 * CHUNK) as spool:
            head = b""
            while chunk := stream.read(CHUNK):
                size += len(chunk)
                if size > limit:
                    raise TooLarge(f"upload exceeds the {limit} byte limit")
                if len(head) < 64:
                    head += chunk[: 64 - len(head)]
                h.update(chunk)
                spool.write(chunk)
            if size == 0:
                raise EmptyUpload("empty upload (0 bytes)")
            content_type = sniff_content_type(head)
            if content_type is None or content_type not in self.settings.limits.allowed_types:
                raise UnsupportedMedia(
                    f"unsupported media: content does not look like an allowed type "
                    f"({', '.join(self.settings.limits.allowed_types)})"
                )
            sha = h.hexdigest()
            with db.connect(self.settings) as conn:
                row = conn.execute("SELECT content_type, size_bytes FROM assets WHERE asset_id=%s", (sha,)).fetchone()
                if row is not None:
                    return IngestResult(sha, False, row["content_type"], row["size_bytes"])
            key = ObjectStore.key_for(sha)
            if not self.store.exists(key):
                spool.seek(0)
                self.store.put(key, spool, size, content_type)  # type: ignore[arg-type]
            if sidecar:
                self.store.put_bytes(sidecar_key(sha), sidecar, "application/rdf+xml")
            working = None
            if media_type_of(content_type) == "image" and self.working_side is not None:
                spool.seek(0)  # decoded once here for the models that look at fewer pixels (working_copy.py)
                working = make_working_copy(self.settings, self.store, sha, spool.read(), self.working_side)
            return self._record(sha, key, content_type, size, meta, working)

    # -- the one transaction ------------------------------------------------------------
    def _record(self, sha: str, key: str, content_type: str, size: int, meta: Metadata,
                working: WorkingCopy | None = None) -> IngestResult:
        event = MediaUploaded(
            event_id=f"upl-{sha[:40]}",
            asset_id=sha,
            bucket=self.store.bucket,
            object_key=key,
            media_type=media_type_of(content_type),  # type: ignore[arg-type]
            content_type=content_type,
            size_bytes=size,
            filename=clean_filename(meta.filename),
            title=meta.title,
            description=meta.description,
            source=meta.source,
            collection=meta.collection,
            working_copy=working,
        )
        with db.connect(self.settings) as conn, conn.transaction():
            inserted = conn.execute(
                """INSERT INTO assets (asset_id, bucket, object_key, media_type, content_type, size_bytes,
                                       filename, title, description, source, collection, uploaded_at)
                   VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)
                   ON CONFLICT (asset_id) DO NOTHING RETURNING asset_id""",
                (sha, event.bucket, key, event.media_type, content_type, size, event.filename, meta.title,
                 meta.description, meta.source, meta.collection, event.occurred_at),
            ).fetchone()
            if inserted is None:  # a concurrent upload of the same content won the race
                return IngestResult(sha, False, content_type, size)
            if meta.embargo_until is not None:  # the rows sinks/lifecycle.py apply(..., "embargo") would write
                conn.execute("INSERT INTO asset_lifecycle (asset_id, embargo_until, actor) VALUES (%s,%s,'ingest')",
                             (sha, meta.embargo_until))
                conn.execute("INSERT INTO asset_lifecycle_log (asset_id, seq, action, actor, detail) "
                             "VALUES (%s, 1, 'embargo', 'ingest', jsonb_build_object('new', %s::text))",
                             (sha, meta.embargo_until.isoformat()))
                lc = MediaLifecycle(event_id=f"lc-{sha}-1", asset_id=sha, action="embargo", seq=1, actor="ingest",
                                    embargo_until=meta.embargo_until)
                conn.execute("INSERT INTO outbox (event_id, topic, key, payload) VALUES (%s,%s,%s,%s)",
                             (lc.event_id, self.settings.topic(TOPIC_LIFECYCLE), sha, dump(lc)))
            conn.execute(
                "INSERT INTO outbox (event_id, topic, key, payload) VALUES (%s,%s,%s,%s)",
                (event.event_id, self.settings.topic(TOPIC_UPLOADED), sha, dump(event)),
            )
            conn.execute("NOTIFY argus_outbox")
        return IngestResult(sha, True, content_type, size)

