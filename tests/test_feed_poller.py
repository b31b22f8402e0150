"""Feed poller against a local HTTP server serving RSS/Atom feeds and their media: enclosures and
media:content, conditional GET (ETag / Last-Modified), dedupe by GUID and by content hash, and the
SSRF guard (loopback refused by default; allowed only through feed.allow_networks)."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from core import db
from core.netguard import BlockedAddress, check_address
from core.settings import Settings
from producers.feed_poller import FeedPoller
from producers.ingest import Ingestor

pytestmark = pytest.mark.integration


def jpeg(color: str, size: int = 48) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buf, "JPEG")
    return buf.getvalue()


@dataclass
class Site:
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # path -> (content type, body)
    redirects: dict[str, str] = field(default_factory=dict)
    etags: dict[str, str] = field(default_factory=dict)
    hits: list[tuple[str, str, int]] = field(default_factory=list)  # (path, if-none-match, status)
    base: str = ""


@pytest.fixture
def site() -> Iterator[Site]:
    s = Site()

    class H(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            inm = self.headers.get("If-None-Match", "")
            if self.path in s.redirects:
                s.hits.append((self.path, inm, 302))
                self.send_response(302)
                self.send_header("Location", s.redirects[self.path])
                self.end_headers()
                return
            if self.path not in s.files:
                s.hits.append((self.path, inm, 404))
                self.send_error(404)
                return
            etag = s.etags.get(self.path)
            if etag and inm == etag:
                s.hits.append((self.path, inm, 304))
                self.send_response(304)
                self.end_headers()
                return
            ctype, body = s.files[self.path]
            s.hits.append((self.path, inm, 200))
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            if etag:
                self.send_header("ETag", etag)
                self.send_header("Last-Modified", "Sat, 21 Nov 2026 10:00:00 GMT")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), H)
    s.base = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield s
    finally:
        server.shutdown()
        server.server_close()


def rss(base: str, items: list[tuple[str, str, str]]) -> bytes:
    """items: (guid, kind, path) with kind enclosure | media."""
    parts = []
    for guid, kind, path in items:
        url = path if "://" in path else f"{base}{path}"
        media = (f'<enclosure url="{url}" type="image/jpeg" length="1"/>' if kind == "enclosure"
                 else f'<media:content url="{url}" medium="image"/>')
        parts.append(f"<item><title>Item {guid}</title><guid>{guid}</guid>"
                     f"<description>&lt;p&gt;Wire photo {guid}&lt;/p&gt;</description>{media}</item>")
    return (f'<?xml version="1.0"?><rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/">'
            f"<channel><title>Wire</title><link>{base}/</link>{''.join(parts)}</channel></rss>").encode()


def atom(base: str) -> bytes:
    return (f'<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
            f"<title>Agency</title><id>urn:agency</id><updated>2026-11-21T10:00:00Z</updated>"
            f"<entry><title>Atom photo</title><id>urn:agency:1</id><updated>2026-11-21T10:00:00Z</updated>"
            f'<link rel="enclosure" href="{base}/atom.png" type="image/png"/></entry></feed>').encode()


def local_settings(env: Settings) -> Settings:
    s = env.model_copy(deep=True)
    s.feed.allow_networks = ["127.0.0.0/8"]  # the test server is on loopback; allowed only here
    s.feed.timeout_s = 5
    return s


def png(color: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), color).save(buf, "PNG")
    return buf.getvalue()


def test_feed_ingests_enclosures_and_media_content_with_conditional_get_and_dedupe(env: Settings,
                                                                                  site: Site) -> None:
    s = local_settings(env)
    site.files["/a.jpg"] = ("image/jpeg", jpeg("red"))
    site.files["/b.jpg"] = ("application/octet-stream", jpeg("blue"))  # the declared type is only a hint
    site.files["/c.txt"] = ("image/jpeg", b"#!/bin/sh\necho not an image\n")  # a lie: sniffed, refused
    site.redirects["/moved.jpg"] = f"{site.base}/a.jpg"
    site.files["/feed.xml"] = ("application/rss+xml", rss(site.base, [
        ("g1", "enclosure", "/a.jpg"), ("g2", "media", "/b.jpg"), ("g3", "enclosure", "/c.txt")]))
    site.etags["/feed.xml"] = '"v1"'
    site.files["/atom.xml"] = ("application/atom+xml", atom(site.base))
    site.files["/atom.png"] = ("image/png", png("green"))
    poller = FeedPoller(s, Ingestor(s))
    url = f"{site.base}/feed.xml"

    r1 = poller.poll(url)
    assert (r1.status, r1.ingested, r1.duplicates) == (200, 2, 0), r1
    assert len(r1.rejected) == 1 and "unsupported media" in r1.rejected[0][1]

    r2 = poller.poll(url)  # unchanged: the server answers 304 to our If-None-Match
    assert r2.not_modified and r2.ingested == 0
    assert site.hits[-1] == ("/feed.xml", '"v1"', 304)

    # the feed changes: old GUIDs are skipped without a download, a new GUID carrying an image we
    # already have (through a redirect) is deduplicated by content hash
    site.files["/feed.xml"] = ("application/rss+xml", rss(site.base, [
        ("g1", "enclosure", "/a.jpg"), ("g2", "media", "/b.jpg"), ("g3", "enclosure", "/c.txt"),
        ("g4", "enclosure", "/moved.jpg")]))
    site.etags["/feed.xml"] = '"v2"'
    before = len([h for h in site.hits if h[0] in ("/a.jpg", "/b.jpg")])
    r3 = poller.poll(url)
    assert (r3.ingested, r3.duplicates, r3.skipped_seen) == (0, 1, 3), r3
    assert len([h for h in site.hits if h[0] in ("/a.jpg", "/b.jpg")]) == before + 1  # only g4's image

    r4 = poller.poll(f"{site.base}/atom.xml")
    assert r4.ingested == 1, r4
    with db.connect(s) as conn:
        assert db.scalar(conn, "SELECT count(*) FROM assets") == 3
        row = conn.execute("SELECT title, description, source FROM assets WHERE asset_id=%s",
                           (r1.asset_ids[0],)).fetchone()
        assert row is not None
        assert row["title"] == "Item g1" and row["description"] == "Wire photo g1"
        assert row["source"] == f"feed:{url}"
        assert db.scalar(conn, "SELECT count(*) FROM outbox") == 3
        assert db.scalar(conn, "SELECT etag FROM feeds WHERE url=%s", (url,)) == '"v2"'


def test_loopback_is_refused_by_default_also_behind_a_redirect(env: Settings, site: Site) -> None:
    site.files["/feed.xml"] = ("application/rss+xml", rss(site.base, [("g1", "enclosure", "/a.jpg")]))
    site.files["/a.jpg"] = ("image/jpeg", jpeg("red"))
    poller = FeedPoller(env, Ingestor(env))  # default policy: nothing but global addresses
    r = poller.poll(f"{site.base}/feed.xml")
    assert r.rejected and "not allowed" in r.rejected[0][1]
    r = poller.poll(f"http://localhost:{site.base.rsplit(':', 1)[1]}/feed.xml")  # a name resolving to loopback
    assert r.rejected and "not allowed" in r.rejected[0][1]
    assert site.hits == []  # no request ever reached the server

    # loopback allowed, but a media URL redirecting to the cloud-metadata address is refused
    s = local_settings(env)
    site.redirects["/evil.jpg"] = "http://169.254.169.254/latest/meta-data/"
    site.files["/feed2.xml"] = ("application/rss+xml", rss(site.base, [("e1", "enclosure", "/evil.jpg"),
                                                                      ("e2", "media", "file:///etc/passwd")]))
    r = FeedPoller(s, Ingestor(s)).poll(f"{site.base}/feed2.xml")
    reasons = dict(r.rejected)
    assert "169.254.169.254 is not allowed" in reasons[f"{site.base}/evil.jpg"]
    assert "not an http(s) URL" in reasons["file:///etc/passwd"]
    assert r.ingested == 0


@pytest.mark.parametrize("ip", ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
                                "100.64.0.1", "0.0.0.0", "224.0.0.1", "::1", "fe80::1", "fc00::1",
                                "::ffff:127.0.0.1", "240.0.0.1"])
def test_address_policy_blocks_non_global(ip: str) -> None:
    import ipaddress

    with pytest.raises(BlockedAddress):
        check_address(ipaddress.ip_address(ip), [])


def test_address_policy_allows_global_and_configured() -> None:
    import ipaddress

    check_address(ipaddress.ip_address("93.184.216.34"), [])
    check_address(ipaddress.ip_address("127.0.0.1"), [ipaddress.ip_network("127.0.0.0/8")])


def test_feed_entry_metadata_travels_as_a_sidecar_into_the_record(env: Settings, site: Site) -> None:
    """media:credit, media:keywords, media:copyright, dc:creator, categories and pubDate are kept: the poller stores
    them as an XMP sidecar beside the new asset, the media_metadata model reads them into the record."""
    from core.storage import ObjectStore
    from models.media_metadata import extract, sidecar_key

    s = local_settings(env)
    photo = jpeg("purple", 64)
    site.files["/wire.jpg"] = ("image/jpeg", photo)
    item = (f'<item><title>Elbe bridge &amp; &lt;b&gt;tolls&lt;/b&gt;</title><guid>w1</guid>'
            f"<description>Minister opens the bridge</description><dc:creator>Jane Doe</dc:creator>"
            f"<category>Politics</category><pubDate>Fri, 03 May 2024 08:11:12 GMT</pubDate>"
            f'<media:content url="{site.base}/wire.jpg" medium="image">'
            f'<media:credit role="photographer">Reuters</media:credit><media:keywords>bridge, hamburg</media:keywords>'
            f"<media:copyright>(c) Reuters 2024</media:copyright></media:content></item>")
    site.files["/meta.xml"] = ("application/rss+xml", (
        '<?xml version="1.0"?><rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/" '
        f'xmlns:dc="http://purl.org/dc/elements/1.1/"><channel><title>Wire</title>{item}</channel></rss>').encode())
    r = FeedPoller(s, Ingestor(s)).poll(f"{site.base}/meta.xml")  # HTML in titles is stripped (as before)
    assert r.ingested == 1, r
    store = ObjectStore(s)
    sidecar = store.get(sidecar_key(r.asset_ids[0]))
    m = extract(photo, "image", sidecar)
    assert (m.headline, m.caption, m.byline, m.credit, m.copyright) == (
        "Elbe bridge & tolls", "Minister opens the bridge", ["Jane Doe"], "Reuters", "(c) Reuters 2024")
    assert m.keywords == ["bridge", "hamburg", "Politics"] and "sidecar" in m.formats and not m.warnings
    assert m.raw["Xmp.xmp.CreateDate"].startswith("2024-05-03T08:11:12")  # the publication date, not date taken
    assert m.taken_at is None
