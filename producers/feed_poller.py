"""Feed poller producer: RSS/Atom wire and agency feeds -> their media -> the ingest core.

- Conditional GET: the feed's ETag / Last-Modified are kept in ``feeds`` and sent back
  (If-None-Match / If-Modified-Since); a 304 costs one small request.
- Media per entry: RSS ``<enclosure>`` and Media RSS ``<media:content>`` (Atom ``rel=enclosure``
  links come through feedparser as enclosures too). The content type is sniffed by the ingest core,
  never taken from the feed.
- Deduplicated twice: by entry GUID (``feed_items``; an entry already seen is not downloaded again)
  and by content hash (the asset id is the media's sha256, so the same picture under a new GUID or in
  another feed is one asset).
- Every URL is fetched through core.netguard: SSRF policy on every resolved address and redirect,
  timeouts, byte caps (feed: ``feed.max_feed_bytes``; media: ``limits.max_upload_bytes``).
- A permanent refusal (blocked address, too large, not media) is recorded as the entry's outcome; a
  transient failure (timeout, 5xx) leaves the entry unseen, so the next poll retries it.
- feedparser only ever parses bytes we fetched; it never fetches anything itself.
- The entry's metadata travels with each of its media as an XMP sidecar (``entry_metadata``): title as the
  headline, summary as the caption, dc:creator/author as the byline, media:credit as the credit line,
  media:copyright/dc:rights as the copyright, media:keywords and categories as keywords, the publication date
  (kept as xmp:CreateDate); the media_metadata model reads it into the record (docs/metadata.md).
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
import re
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import feedparser
import httpx

from core import db
from core.netguard import FetchError, fetch, guarded_client
from core.settings import Settings
from models.media_metadata import xmp_sidecar
from producers.ingest import IngestError, Ingestor, Metadata

log = logging.getLogger(__name__)

_TAGS = re.compile(r"<[^>]+>")


@dataclass
class PollResult:
    url: str
    status: int = 0
    not_modified: bool = False
    ingested: int = 0
    duplicates: int = 0
    skipped_seen: int = 0
    no_media: int = 0
    retry_later: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (what, reason)
    asset_ids: list[str] = field(default_factory=list)


def entry_guid(entry: Any) -> str:
    guid = entry.get("id") or entry.get("guid") or entry.get("link")
    if guid:
        return str(guid)[:2000]
    basis = "|".join([str(entry.get("title", "")), *(u for u, _ in media_urls(entry))])
    return "sha256:" + hashlib.sha256(basis.encode()).hexdigest()


def media_urls(entry: Any) -> list[tuple[str, str]]:
    """(url, declared type) of the entry's media: enclosures, then media:content; unique, in order."""
    seen: list[tuple[str, str]] = []
    candidates = [(e.get("href") or e.get("url"), e.get("type") or "") for e in entry.get("enclosures", [])]
    for mc in entry.get("media_content", []):
        declared = mc.get("type") or mc.get("medium") or ""
        candidates.append((mc.get("url"), declared))
    for url, declared in candidates:
        if not url:
            continue
        # declared types are hints only (the bytes are sniffed); skip only what is clearly not media
        if declared and not declared.startswith(("image", "video")) and "/" in declared:
            continue
        if url not in (u for u, _ in seen):
            seen.append((str(url), str(declared)))
    return seen


def _text(value: Any, limit: int) -> str | None:
    if not value:
        return None
    return re.sub(r"\s+", " ", _TAGS.sub(" ", str(value))).strip()[:limit] or None


def entry_metadata(entry: Any) -> dict[str, Any]:
    """The record fields a feed entry carries (names as in schemas/events.py MediaMetadata)."""
    credits = [c.get("content") for c in entry.get("media_credit", []) if isinstance(c, dict) and c.get("content")]
    byline = [a.get("name") for a in entry.get("authors", []) if isinstance(a, dict) and a.get("name")]
    keywords: list[str] = []
    for k in [*str(entry.get("media_keywords") or "").split(","),
              *(t.get("term") for t in entry.get("tags", []) if isinstance(t, dict))]:
        k = (k or "").strip()
        if k and k.lower() not in (x.lower() for x in keywords):
            keywords.append(k)
    published = entry.get("published_parsed") or entry.get("updated_parsed")
    return {
        "headline": _text(entry.get("title"), 1000),
        "caption": _text(entry.get("summary"), 10000),
        "byline": byline or ([entry["author"]] if entry.get("author") else []),
        "credit": _text(credits[0], 500) if credits else None,
        "copyright": _text(entry.get("media_copyright") or entry.get("rights"), 1000),
        "keywords": keywords[:200],
        "published": "{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}Z".format(*published[:6]) if published else None,
    }


class FeedPoller:
    def __init__(self, settings: Settings, ingestor: Ingestor, client: httpx.Client | None = None) -> None:
        self.settings = settings
        self.ingestor = ingestor
        self.client = client or guarded_client(settings)
        self.stop_event = threading.Event()

    # -- one poll -----------------------------------------------------------------------------
    def poll(self, url: str) -> PollResult:
        res = PollResult(url)
        f = self.settings.feed
        with db.connect(self.settings) as conn:
            row = conn.execute("SELECT etag, last_modified FROM feeds WHERE url=%s", (url,)).fetchone()
        headers = {"Accept": "application/rss+xml, application/atom+xml, application/xml;q=0.9, */*;q=0.1"}
        if row and row["etag"]:
            headers["If-None-Match"] = row["etag"]
        if row and row["last_modified"]:
            headers["If-Modified-Since"] = row["last_modified"]
        try:
            got = fetch(self.client, url, f.max_feed_bytes, f.timeout_s * 2, headers)
        except FetchError as exc:
            self._save_feed(url, None, None, 0, str(exc), keep_validators=True)
            res.rejected.append(("feed", str(exc)))
            log.warning("feed %s: %s", url, exc)
            return res
        res.status = got.status
        if got.status == 304 or got.body is None:
            res.not_modified = True
            self._save_feed(url, None, None, 304, None, keep_validators=True)
            return res
        with got.body as body:
            parsed = feedparser.parse(body.read(), response_headers={
                "content-location": got.url, "content-type": got.headers.get("content-type", "application/xml")})
        if not parsed.entries and parsed.get("bozo"):
            reason = f"not a feed: {parsed.get('bozo_exception')}"
            self._save_feed(url, None, None, got.status, reason, keep_validators=True)
            res.rejected.append(("feed", reason))
            return res
        for entry in parsed.entries[: f.max_items_per_poll]:
            if self.stop_event.is_set():
                break
            self._entry(url, entry, res)
        # validators only after the entries were handled: a crash mid-way re-reads the whole feed,
        # and the seen GUIDs keep that from ingesting anything twice
        self._save_feed(url, got.headers.get("etag"), got.headers.get("last-modified"), got.status, None)
        log.info("feed %s: %d new, %d duplicate, %d seen, %d rejected", url, res.ingested, res.duplicates,
                 res.skipped_seen, len(res.rejected))
        return res

    def _entry(self, feed_url: str, entry: Any, res: PollResult) -> None:
        guid = entry_guid(entry)
        with db.connect(self.settings) as conn:
            seen = conn.execute("SELECT 1 FROM feed_items WHERE feed_url=%s AND guid=%s",
                                (feed_url, guid)).fetchone()
        if seen:
            res.skipped_seen += 1
            return
        media = media_urls(entry)
        if not media:
            res.no_media += 1
            self._record(feed_url, guid, None, None, "no media")
            return
        retry = False
        fields = entry_metadata(entry)
        sidecar = xmp_sidecar(fields) if any(fields.values()) else None
        for i, (media_url, _declared) in enumerate(media):
            key = guid if i == 0 else f"{guid}#{i}"
            meta = Metadata(filename=posixpath.basename(urlsplit(media_url).path) or "feed-media",
                            title=_text(entry.get("title"), 1000), description=_text(entry.get("summary"), 10000),
                            source=f"feed:{feed_url}"[:1000])
            try:
                got = fetch(self.client, media_url, self.settings.limits.max_upload_bytes,
                            self.settings.feed.timeout_s * 6)
                assert got.body is not None
                with got.body as body:
                    r = self.ingestor.ingest_stream(body, meta, sidecar)
            except FetchError as exc:
                res.rejected.append((media_url, str(exc)))
                if exc.permanent:
                    self._record(feed_url, key, None, media_url, f"rejected: {exc}")
                else:
                    res.retry_later += 1
                    retry = True
                continue
            except IngestError as exc:
                res.rejected.append((media_url, str(exc)))
                self._record(feed_url, key, None, media_url, f"rejected: {exc}")
                continue
            res.asset_ids.append(r.asset_id)
            if r.created:
                res.ingested += 1
            else:
                res.duplicates += 1
            self._record(feed_url, key, r.asset_id, media_url, "ingested" if r.created else "duplicate")
        if retry:  # the base GUID stays unseen only if its first media must be retried
            log.info("feed %s: entry %s will be retried", feed_url, guid[:80])

    def _record(self, feed_url: str, guid: str, asset_id: str | None, media_url: str | None, outcome: str) -> None:
        with db.transaction(self.settings) as conn:
            conn.execute(
                """INSERT INTO feed_items (feed_url, guid, content_hash, asset_id, media_url, outcome)
                   VALUES (%s,%s,%s,%s,%s,%s) ON CONFLICT (feed_url, guid) DO NOTHING""",
                (feed_url, guid, asset_id, asset_id, media_url, outcome[:2000]),
            )

    def _save_feed(self, url: str, etag: str | None, last_modified: str | None, status: int,
                   error: str | None, keep_validators: bool = False) -> None:
        with db.transaction(self.settings) as conn:
            conn.execute(
                """INSERT INTO feeds (url, etag, last_modified, last_polled_at, last_status, last_error)
                   VALUES (%s,%s,%s,now(),%s,%s)
                   ON CONFLICT (url) DO UPDATE SET
                     etag = CASE WHEN %s THEN feeds.etag ELSE EXCLUDED.etag END,
                     last_modified = CASE WHEN %s THEN feeds.last_modified ELSE EXCLUDED.last_modified END,
                     last_polled_at = now(), last_status = EXCLUDED.last_status, last_error = EXCLUDED.last_error""",
                (url, etag, last_modified, status, error, keep_validators, keep_validators),
            )

    # -- the loop -----------------------------------------------------------------------------
    def run(self, urls: list[str], interval_s: float | None = None) -> None:
        interval = interval_s or self.settings.feed.poll_interval_s
        log.info("polling %d feed(s) every %.0fs", len(urls), interval)
        while not self.stop_event.is_set():
            for url in urls:
                try:
                    self.poll(url)
                except Exception as exc:  # noqa: BLE001 - one bad feed or a db hiccup must not stop the others
                    log.warning("feed %s: poll failed: %s", url, exc)
            self.stop_event.wait(interval)

    def stop(self) -> None:
        self.stop_event.set()
