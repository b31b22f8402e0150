"""Agency deliveries (producers/agency.py): ninjs 1.x, 2.x, 3.x and NewsML-G2 documents with their renditions,
hostile documents (XML bomb, external entities, remote or escaping renditions, unknown fields), and one delivery
ingested on the embedded stack with its record as a sidecar and its embargo in the asset's transaction."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PIL import Image

from producers.agency import AgencyError, best_rendition, ingest_document, parse, resolve

NINJS_1 = {"uri": "urn:ap:1", "type": "picture", "version": "1", "pubstatus": "usable",
           "headline": "Elbe bridge opens", "byline": "Jane Doe", "description_text": "Minister opens the bridge",
           "copyrightholder": "AP", "copyrightnotice": "(c) AP 2024", "usageterms": "Editorial use only",
           "subject": [{"name": "politics", "code": "11000000"}], "embargoed": "2030-01-01T09:00:00Z",
           "renditions": {"thumbnail": {"href": "thumb.jpg", "mimetype": "image/jpeg", "width": 64},
                          "original": {"href": "photo.jpg", "mimetype": "image/jpeg", "width": 640}},
           "x-vendor-extension": {"anything": [1, 2]}}
NINJS_2 = {"uri": "urn:afp:2", "type": "picture", "pubStatus": "usable",
           "headlines": [{"role": "short", "value": "Bridge"}, {"role": "main", "value": "Elbe bridge opens"}],
           "descriptions": [{"role": "caption", "value": "Minister opens the bridge"}],
           "people": [{"name": "Jane Doe", "rel": "creator"}], "subjects": [{"name": "politics"}],
           "rightsinfo": {"copyrightholder": "AFP", "copyrightnotice": "(c) AFP", "usageterms": "No archive"},
           "embargoedUntil": "2030-01-01T09:00:00+01:00",
           "renditions": {"highres": {"href": "photo.jpg", "contentType": "image/jpeg"}}}
NINJS_3 = {"$schema": "http://www.iptc.org/std/ninjs/ninjs-schema_3.0.json", "uri": "urn:dpa:3", "type": "picture",
           "pubStatus": "usable", "headlines": [{"role": "main", "value": "Elbe bridge opens"}],
           "descriptions": [{"role": "caption", "value": "Minister opens the bridge"}], "by": "Jane Doe",
           "rightsInfo": [{"copyrightHolder": "dpa", "copyrightNotice": "(c) dpa", "usageTerms": "Editorial"}],
           "renditions": [{"name": "preview", "href": "small.jpg", "contentType": "image/jpeg"},
                          {"name": "original", "href": "photo.jpg", "contentType": "image/jpeg"}]}
NEWSML = b"""<?xml version="1.0" encoding="UTF-8"?>
<newsItem xmlns="http://iptc.org/std/nar/2006-10-01/" guid="urn:newsml:reuters:1" version="1" standard="NewsML-G2"
          standardversion="2.33">
  <rightsInfo><copyrightHolder><name>Reuters</name></copyrightHolder>
    <copyrightNotice>(c) Reuters 2024</copyrightNotice><usageTerms>Editorial use only</usageTerms></rightsInfo>
  <itemMeta><itemClass qcode="ninat:picture"/><pubStatus qcode="stat:usable"/>
    <embargoed>2030-01-01T09:00:00Z</embargoed><edNote>Do not crop</edNote></itemMeta>
  <contentMeta><contentCreated>2024-05-03T10:11:12+02:00</contentCreated>
    <located><name>Hamburg</name></located><creator><name>Jane Doe</name></creator>
    <creditline>Reuters/Jane Doe</creditline><headline>Elbe bridge opens</headline>
    <description role="drol:caption">Minister &lt;b&gt;opens&lt;/b&gt; the bridge</description>
    <subject type="cpnat:abstract" qcode="medtop:11000000"><name>politics</name></subject>
    <keyword>bridge</keyword></contentMeta>
  <contentSet><remoteContent rendition="rend:thumbnail" href="thumb.jpg" contenttype="image/jpeg"/>
    <remoteContent rendition="rend:baseImage" href="photo.jpg" contenttype="image/jpeg" width="640" height="480"/>
  </contentSet>
</newsItem>"""


@pytest.mark.parametrize("doc", [NINJS_1, NINJS_2, NINJS_3], ids=["ninjs1", "ninjs2", "ninjs3"])
def test_ninjs_versions_map_to_the_record(doc: dict) -> None:
    item = parse(json.dumps(doc).encode())
    f = item.fields
    assert (item.format, f["headline"], f["caption"], f["byline"]) == (
        "ninjs", "Elbe bridge opens", "Minister opens the bridge", ["Jane Doe"])
    assert f["credit"] in ("AP", "AFP", "dpa") and f["copyright"].startswith("(c)") and f["usage_terms"]
    assert best_rendition(item).href == "photo.jpg" and item.pub_status == "usable"
    if "embargoed" in doc or "embargoedUntil" in doc:
        assert item.embargo_until is not None and item.embargo_until.year == 2030


def test_newsml_g2_maps_to_the_record() -> None:
    item = parse(NEWSML)
    f = item.fields
    assert (item.format, item.uri, item.pub_status) == ("newsml", "urn:newsml:reuters:1", "usable")
    assert (f["headline"], f["byline"], f["credit"], f["city"]) == (
        "Elbe bridge opens", ["Jane Doe"], "Reuters/Jane Doe", "Hamburg")
    assert f["caption"] == "Minister <b>opens</b> the bridge"  # markup stays text
    assert (f["copyright"], f["usage_terms"], f["instructions"]) == ("(c) Reuters 2024", "Editorial use only",
                                                                     "Do not crop")
    assert f["keywords"] == ["politics", "bridge"] and f["date_created"] == "2024-05-03T10:11:12+02:00"
    assert item.embargo_until == datetime(2030, 1, 1, 9, tzinfo=UTC)
    assert best_rendition(item).href == "photo.jpg"
    withheld = parse(NEWSML.replace(b"stat:usable", b"stat:canceled"))
    assert withheld.pub_status == "canceled"


def test_hostile_documents_are_refused_and_nothing_is_fetched(tmp_path: Path) -> None:
    bomb = (b'<?xml version="1.0"?><!DOCTYPE n [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
            b'<newsItem xmlns="http://iptc.org/std/nar/2006-10-01/"><contentMeta><headline>&b;</headline>'
            b"</contentMeta></newsItem>")
    with pytest.raises(AgencyError, match="refused"):
        parse(bomb)
    xxe = bomb.replace(b'<!ENTITY a "aaaaaaaaaa">', b'<!ENTITY a SYSTEM "http://127.0.0.1:9/x">')
    with pytest.raises(AgencyError, match="refused"):
        parse(xxe)
    with pytest.raises(AgencyError, match="malformed"):
        parse(b"<newsItem><unclosed></newsItem>")
    with pytest.raises(AgencyError, match="invalid JSON"):
        parse(b"{not json")
    with pytest.raises(AgencyError, match="neither"):
        parse(b"\x00\x01binary")
    no_media = parse(json.dumps({"uri": "u", "headline": "h"}).encode())
    with pytest.raises(AgencyError, match="no picture"):
        best_rendition(no_media)
    (tmp_path / "photo.jpg").write_bytes(b"x")
    for href in ("http://127.0.0.1:9/photo.jpg", "https://example.com/a.jpg", "../photo.jpg", "/etc/passwd",
                 "file:///etc/passwd", "missing.jpg"):
        with pytest.raises(AgencyError):
            resolve(tmp_path / "sub" if href.startswith("..") else tmp_path, href)
    assert resolve(tmp_path, "photo.jpg") == (tmp_path / "photo.jpg").resolve()


@pytest.mark.integration
def test_a_delivery_is_ingested_with_its_record_and_embargo(env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from core import db
    from core.storage import ObjectStore
    from models.media_metadata import extract, sidecar_key
    from producers.ingest import Ingestor

    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 120, 30)).save(buf, "JPEG")
    photo = buf.getvalue()
    (tmp_path / "photo.jpg").write_bytes(photo)
    (tmp_path / "thumb.jpg").write_bytes(b"not used")
    (tmp_path / "item.xml").write_bytes(NEWSML)
    ing = Ingestor(env)
    r = ingest_document(ing, tmp_path / "item.xml", source="reuters")
    assert r.outcome == "ingested" and r.ingest is not None
    aid = r.ingest.asset_id
    m = extract(photo, "image", ObjectStore(env).get(sidecar_key(aid)))
    assert (m.headline, m.credit, m.byline, m.usage_terms) == ("Elbe bridge opens", "Reuters/Jane Doe", ["Jane Doe"],
                                                              "Editorial use only")
    assert m.taken_at == datetime(2024, 5, 3, 8, 11, 12, tzinfo=UTC) and not m.warnings
    with db.connect(env) as conn:
        lc = conn.execute("SELECT state, embargo_until FROM asset_lifecycle WHERE asset_id=%s", (aid,)).fetchone()
        row = conn.execute("SELECT title, source FROM assets WHERE asset_id=%s", (aid,)).fetchone()
        topics = [t["topic"] for t in conn.execute("SELECT topic FROM outbox ORDER BY id").fetchall()]
    assert lc is not None and lc["state"] == "active" and lc["embargo_until"] == datetime(2030, 1, 1, 9, tzinfo=UTC)
    assert row is not None and row["title"] == "Elbe bridge opens" and row["source"] == "reuters:newsml"
    assert topics == [env.topic("media.lifecycle"), env.topic("media.uploaded")]
    # the same delivery again is a duplicate; a canceled item is not ingested
    assert ingest_document(ing, tmp_path / "item.xml").outcome == "duplicate"
    (tmp_path / "kill.xml").write_bytes(NEWSML.replace(b"stat:usable", b"stat:canceled"))
    assert ingest_document(ing, tmp_path / "kill.xml").outcome == "canceled"
