"""media_metadata: IPTC IIM, XMP and EXIF read by exiv2 (models/media_metadata.py), normalised into one record
that search indexes (schemas/events.py MediaMetadata). Test photos get real metadata written by pyexiv2 here.

Unit tests need no server; the integration test runs the processor + sinks on the embedded stack and searches by
caption, byline, credit, keyword, date taken and GPS box, then kills and embargoes assets (docs/metadata.md).
"""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest
from PIL import Image

from models.media_metadata import MAX_XMP_BYTES, extract, parse_date
from schemas.events import MediaMetadata


def jpeg(color: tuple[int, int, int] = (200, 10, 10), size: tuple[int, int] = (96, 64)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG")
    return buf.getvalue()


def tagged(data: bytes, iptc: dict | None = None, xmp: dict | None = None, exif: dict | None = None) -> bytes:
    import pyexiv2

    with pyexiv2.ImageData(data) as img:
        if iptc:
            img.modify_iptc(iptc)
        if xmp:
            img.modify_xmp(xmp)
        if exif:
            img.modify_exif(exif)
        return bytes(img.get_bytes())


WIRE = dict(
    iptc={"Iptc.Application2.Caption": "Minister <script>alert(1)</script> opens the Elbe bridge",
          "Iptc.Application2.Byline": ["Jane Doe"], "Iptc.Application2.Keywords": ["bridge", "politics"],
          "Iptc.Application2.Credit": "Reuters", "Iptc.Application2.City": "Hamburg",
          "Iptc.Application2.CountryName": "Germany", "Iptc.Application2.Source": "RTR"},
    xmp={"Xmp.photoshop.Headline": "Elbe bridge opens", "Xmp.xmpRights.UsageTerms": "Editorial use only",
         "Xmp.dc.rights": "(c) Reuters 2024"},
    exif={"Exif.Photo.DateTimeOriginal": "2024:05:03 10:11:12", "Exif.Photo.OffsetTimeOriginal": "+02:00",
          "Exif.Image.Make": "Canon", "Exif.Image.Model": "EOS R3",
          "Exif.GPSInfo.GPSLatitude": "53/1 33/1 0/1", "Exif.GPSInfo.GPSLatitudeRef": "N",
          "Exif.GPSInfo.GPSLongitude": "9/1 59/1 30/1", "Exif.GPSInfo.GPSLongitudeRef": "E"},
)


def test_wire_photo_is_normalised_and_feeds_search() -> None:
    m = extract(tagged(jpeg(), **WIRE), "image")
    assert m.headline == "Elbe bridge opens" and m.byline == ["Jane Doe"] and m.credit == "Reuters"
    assert m.caption == "Minister <script>alert(1)</script> opens the Elbe bridge"  # markup stays text
    assert (m.city, m.country, m.source, m.copyright) == ("Hamburg", "Germany", "RTR", "(c) Reuters 2024")
    assert m.usage_terms == "Editorial use only" and m.keywords == ["bridge", "politics"]
    assert m.date_created == "2024-05-03T10:11:12+02:00"
    assert m.taken_at == datetime(2024, 5, 3, 8, 11, 12, tzinfo=UTC)
    assert m.gps_lat == pytest.approx(53.55) and m.gps_lon == pytest.approx(9.99166667)
    assert (m.make, m.camera_model, m.width, m.height) == ("Canon", "EOS R3", 96, 64)
    assert set(m.formats) == {"exif", "iptc", "xmp"} and not m.warnings and m.raw["Exif.Image.Make"] == "Canon"
    f = m.search_fields()
    assert "Elbe bridge opens" in f.title_text and "opens the Elbe bridge" in f.title_text
    assert {"bridge", "politics", "byline:jane doe", "credit:reuters", "city:hamburg", "country:germany",
            "iptc_source:rtr", "taken_month:2024-05", "taken_day:2024-05-03"} <= set(f.labels)
    assert f.numeric["taken_at"] == m.taken_at.timestamp() and f.numeric["gps_lat"] == pytest.approx(53.55)
    assert MediaMetadata.model_validate_json(m.model_dump_json()) == m  # the event round-trips


def test_ai_generated_digital_source_type_and_image_regions() -> None:
    xmp = {"Xmp.iptcExt.DigitalSourceType": "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"}
    m = extract(tagged(jpeg(), xmp=xmp), "image")
    assert m.ai_generated and "ai_generated" in m.search_fields().labels
    assert not extract(jpeg(), "image").ai_generated


def test_hostile_metadata_warns_and_the_asset_still_flows() -> None:
    # impossible dates and GPS out of range are dropped with a warning
    m = extract(tagged(jpeg(), exif={"Exif.Photo.DateTimeOriginal": "0000:00:00 00:00:00",
                                     "Exif.GPSInfo.GPSLatitude": "123/1 0/1 0/1", "Exif.GPSInfo.GPSLatitudeRef": "N",
                                     "Exif.GPSInfo.GPSLongitude": "9/1 0/1 0/1",
                                     "Exif.GPSInfo.GPSLongitudeRef": "E"}), "image")
    assert m.taken_at is None and m.gps_lat is None
    assert any("impossible date" in w for w in m.warnings) and any("GPS out of range" in w for w in m.warnings)
    # control characters and binary junk in IPTC are removed
    m = extract(tagged(jpeg(), iptc={"Iptc.Application2.Caption": "ok\x00\x07 caption\x1b"}), "image")
    assert m.caption == "ok caption"
    # no metadata at all: an empty record, no warnings
    assert extract(jpeg(), "image").formats == []
    # not an image: a warning, no exception
    assert extract(b"junk" * 10, "image").warnings


def _with_xmp_packet(packet: bytes) -> bytes:
    """A JPEG whose APP1 XMP segment is ``packet`` (written by hand: no library writes a hostile one)."""
    data = jpeg()
    ns = b"http://ns.adobe.com/xap/1.0/\x00"
    body = ns + packet
    if len(body) + 2 > 0xFFFF:  # a huge packet: spread over several APP1 segments is what cameras never do
        segs = b"".join(b"\xff\xe1" + (len(ns + packet[i:i + 60000]) + 2).to_bytes(2, "big") + ns
                        + packet[i:i + 60000] for i in range(0, len(packet), 60000))
    else:
        segs = b"\xff\xe1" + (len(body) + 2).to_bytes(2, "big") + body
    return data[:2] + segs + data[2:]


def test_xml_bomb_and_external_entities_in_xmp_are_never_expanded() -> None:
    bomb = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">'
            b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;">]><x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
            b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
            b'xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/" photoshop:Headline="&c;"/></rdf:RDF></x:xmpmeta>')
    m = extract(_with_xmp_packet(bomb), "image")
    assert m.headline is None and any("DTD or entities" in w for w in m.warnings)
    ext = bomb.replace(b'<!ENTITY a "aaaaaaaaaa">', b'<!ENTITY a SYSTEM "http://127.0.0.1:9/x">')
    m = extract(_with_xmp_packet(ext), "image")
    assert m.headline is None and any("DTD or entities" in w for w in m.warnings)


def test_oversized_xmp_packet_is_not_parsed() -> None:
    packet = b'<x:xmpmeta xmlns:x="adobe:ns:meta/">' + b" " * (MAX_XMP_BYTES + 10) + b"</x:xmpmeta>"
    m = extract(_with_xmp_packet(packet), "image")
    assert any("exceeds" in w for w in m.warnings)


def test_xmp_sidecar_wins_and_a_hostile_sidecar_is_refused() -> None:
    sidecar = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
               b'<rdf:Description rdf:about="" xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/" '
               b'photoshop:Headline="Desk headline" photoshop:Credit="AFP"/></rdf:RDF></x:xmpmeta>')
    m = extract(tagged(jpeg(), **WIRE), "image", sidecar=sidecar)
    assert (m.headline, m.credit, m.byline) == ("Desk headline", "AFP", ["Jane Doe"]) and "sidecar" in m.formats
    bad = b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>' + sidecar
    m = extract(tagged(jpeg(), **WIRE), "image", sidecar=bad)
    assert m.headline == "Elbe bridge opens" and any("sidecar rejected" in w for w in m.warnings)


def test_dates_with_and_without_zones() -> None:
    assert parse_date("2024-05-03T10:11:12Z") == ("2024-05-03T10:11:12+00:00",
                                                  datetime(2024, 5, 3, 10, 11, 12, tzinfo=UTC))
    written, utc = parse_date("2024:05:03 10:11:12", "-05:00") or ("", datetime.now(UTC))
    assert written.endswith("-05:00") and utc == datetime(2024, 5, 3, 15, 11, 12, tzinfo=UTC)
    assert parse_date("20240503T101112+0200") == ("2024-05-03T10:11:12+02:00",
                                                  datetime(2024, 5, 3, 8, 11, 12, tzinfo=UTC))  # IPTC IIM form
    with pytest.raises(ValueError):
        parse_date("2024:13:45 00:00:00")
    assert parse_date("1999-01-01T00:00:00+14:00")[1] == datetime(1998, 12, 31, 10, tzinfo=UTC)  # type: ignore[index]


def test_heic_and_avif_photos_are_accepted_and_decode() -> None:
    """iPhone photos (HEIC) and AVIF: sniffed as images at ingest, decoded by core.imaging (every model's input)."""
    from core.imaging import load_image
    from producers.ingest import media_type_of, sniff_content_type

    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (0, 100, 10)).save(buf, "HEIF")
    heic = buf.getvalue()
    assert heic[4:12] == b"ftypheic" and sniff_content_type(heic[:64]) == "image/heic"
    assert media_type_of("image/heic") == "image"
    img = load_image(heic, 10_000_000)
    assert img.size == (64, 48) and img.mode == "RGB" and abs(img.getpixel((32, 24))[1] - 100) < 12
    assert extract(heic, "image").width == 64
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (0, 0, 200)).save(buf, "AVIF")
    avif = buf.getvalue()
    assert sniff_content_type(avif[:64]) == "image/avif" and load_image(avif, 10**7).size == (40, 30)


def _noisy_jpeg(size: tuple[int, int]) -> bytes:
    """A photo-like JPEG far larger than the header read (random pixels do not compress)."""
    import numpy as np

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(3).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(
        buf, "JPEG", quality=90)
    return buf.getvalue()


def test_jpeg_header_end_finds_the_pixels_and_refuses_what_it_cannot_see() -> None:
    from core.imaging import jpeg_header_end

    data = tagged(_noisy_jpeg((800, 600)), **WIRE)
    end = jpeg_header_end(data)
    assert end is not None and 1000 < end < 64 * 1024 < len(data) and data[end:end + 2] == b"\xff\xda"
    assert jpeg_header_end(data[:end + 2]) is None  # the scan's own header cut off
    assert extract(data[:end + 64], "image") == extract(data, "image")  # the header alone says it all
    assert jpeg_header_end(data[:end - 10]) is None  # cut inside the header
    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, "PNG")
    assert jpeg_header_end(png.getvalue()) is None and jpeg_header_end(b"") is None
    assert jpeg_header_end(b"\xff\xd8\x00\x00junk") is None


@pytest.mark.integration
def test_the_processor_fetches_only_the_header_of_a_large_jpeg(env) -> None:  # type: ignore[no-untyped-def]
    from core import db
    from models.registry import get_model
    from processors.runtime import Processor
    from producers.ingest import Ingestor, Metadata
    from schemas.events import MediaUploaded, parse

    big = tagged(_noisy_jpeg((1600, 1200)), **WIRE)
    png = io.BytesIO()
    Image.new("RGB", (900, 900), (1, 2, 3)).save(png, "PNG", compress_level=0)  # no JPEG: read whole
    proc = Processor(env, get_model(env, "media_metadata"))
    try:
        for data, kind in ((big, "head"), (png.getvalue(), "original")):
            res = Ingestor(env).ingest_bytes(data, Metadata(filename=f"h.{kind}"))
            with db.connect(env) as conn:
                raw = conn.execute("SELECT payload FROM outbox WHERE event_id=%s",
                                   (f"upl-{res.asset_id[:40]}",)).fetchone()
            ev = parse(bytes(raw["payload"]), MediaUploaded)
            items = proc._fetch_prepare(ev)
            assert isinstance(items, list), items
            assert proc.reads[kind] == 1, proc.reads
            if kind == "head":
                assert proc.reads["head_bytes"] == 256 * 1024 < len(big)
                assert items[0].row["MEDIA"].item() == extract(big, "image")  # the same record as from the whole
    finally:
        proc.pool.shutdown()
        proc.triton.close()
