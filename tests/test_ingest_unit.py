"""Content sniffing and filename hygiene (no servers)."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from producers.ingest import clean_filename, sniff_content_type


def _encode(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buf, fmt)
    return buf.getvalue()


@pytest.mark.parametrize(("fmt", "ctype"), [("JPEG", "image/jpeg"), ("PNG", "image/png"), ("GIF", "image/gif"),
                                            ("WEBP", "image/webp"), ("TIFF", "image/tiff"), ("BMP", "image/bmp")])
def test_sniffs_real_images(fmt: str, ctype: str) -> None:
    assert sniff_content_type(_encode(fmt)[:64]) == ctype


@pytest.mark.parametrize(("head", "ctype"), [
    (b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00", "video/mp4"),
    (b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00", "video/quicktime"),
    (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm", "video/webm"),
    (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x88matroska", "video/x-matroska"),
    (b"%PDF-1.7", None), (b"<html>", None), (b"MZ\x90\x00", None), (b"", None),
])
def test_sniffs_by_content_not_name(head: bytes, ctype: str | None) -> None:
    assert sniff_content_type(head) == ctype


@pytest.mark.parametrize(("raw", "clean"), [
    ("../../etc/passwd", "passwd"), ("C:\\Users\\x\\photo.jpg", "photo.jpg"), ("", "upload"),
    (None, "upload"), (".hidden.jpg", "hidden.jpg"), ("a\x00b\nc.jpg", "abc.jpg"),
])
def test_clean_filename(raw: str | None, clean: str) -> None:
    assert clean_filename(raw) == clean


@given(st.text())
def test_clean_filename_never_has_separators_or_controls(name: str) -> None:
    out = clean_filename(name)
    assert out and "/" not in out and len(out) <= 255
    assert all(ord(c) >= 32 for c in out)
