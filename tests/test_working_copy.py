"""The ingest working copy (producers/working_copy.py): a large image is decoded once at ingest into an upright JPEG
at the largest side any enabled model looks at; the upload event names it; processors whose model looks at no more
than that read it instead of the original, fall back to the original when it is missing, and a replay annotates
the same bytes the same way.

Unit tests need no server; the integration tests use the session's embedded stack (SeaweedFS, PostgreSQL, Triton)
and the real processor runtime (its fetch + prepare + inference path, without the Kafka loop).
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from core.imaging import load_image, load_image_sized
from core.settings import Settings
from core.storage import ObjectStore
from models.pdq import PdqHasher
from models.registry import get_model
from models.renditions import Renditions
from processors.runtime import Processor
from producers.ingest import Ingestor, Metadata
from producers.working_copy import encode_working_copy, make_working_copy, working_copy_key, working_side
from schemas.events import Annotation, MediaUploaded, WorkingCopy, dump, parse

ASSET = "cd" * 32


class WidePdq(PdqHasher):
    """PDQ as if it looked at 2000 px: more than any working copy here, so it must read the original."""

    input_side = 2000


def photo_jpeg(size: tuple[int, int] = (3000, 2000), orientation: int | None = None, seed: int = 0) -> bytes:
    """A photo-like JPEG: a sample photo scaled up, with a little grain (distinct bytes per seed)."""
    from skimage import data

    img = Image.fromarray(data.astronaut()).resize(size, Image.Resampling.BICUBIC)
    rng = np.random.default_rng(seed)
    arr = np.asarray(img, dtype=np.int16) + rng.integers(-3, 4, (size[1], size[0], 3), dtype=np.int16)
    buf = io.BytesIO()
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    Image.fromarray(arr.clip(0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90, exif=exif.tobytes())
    return buf.getvalue()


def event(wc: WorkingCopy | None, asset_id: str = ASSET, key: str = "k", bucket: str = "b") -> MediaUploaded:
    return MediaUploaded(event_id=f"upl-{asset_id[:40]}", asset_id=asset_id, bucket=bucket, object_key=key,
                         media_type="image", content_type="image/jpeg", size_bytes=1, filename="x.jpg",
                         working_copy=wc)


# ---------------------------------------------------------------------------------------------------- unit
def test_side_is_the_largest_enabled_image_model_input() -> None:
    s = Settings()
    s.models = ["efficientnet_lite0", "pdq", "ocr_ppocr", "text_embed", "media_metadata"]
    assert working_side(s) == 960  # OCR; text_embed reads annotations, media_metadata the original
    s.models = ["efficientnet_lite0", "renditions"]
    assert working_side(s) == 1280
    s.models = ["text_embed"]
    assert working_side(s) is None


def test_copy_is_upright_at_the_side_and_small_images_get_none() -> None:
    s = Settings()
    data = photo_jpeg((3000, 2000), orientation=6)  # stored landscape, shown portrait (turned by 90 degrees)
    made = encode_working_copy(data, s, 960)
    assert made is not None
    jpeg, w, h, src_w, src_h = made
    assert (src_w, src_h) == (2000, 3000) and (w, h) == (640, 960)
    copy = Image.open(io.BytesIO(jpeg))
    assert copy.format == "JPEG" and copy.size == (640, 960)
    assert copy.getexif().get(0x0112) is None  # orientation applied once, here; nothing left to apply again
    assert load_image(jpeg, s.limits.max_image_pixels).size == (640, 960)
    # the copy shows the same picture as the original decoded the old way
    full = load_image(data, s.limits.max_image_pixels).resize((64, 96))
    small = load_image(jpeg, s.limits.max_image_pixels).resize((64, 96))
    assert np.abs(np.asarray(full, dtype=np.int16) - np.asarray(small, dtype=np.int16)).mean() < 6
    assert encode_working_copy(photo_jpeg((900, 600)), s, 960) is None  # not larger than the side: the original
    assert encode_working_copy(jpeg, s, 960) is None  # the copy itself needs no copy
    assert encode_working_copy(data, s, 960) == made  # deterministic bytes: a retried upload rewrites the same


def test_bombs_and_broken_images_get_no_copy() -> None:
    import struct
    import zlib

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    bomb = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    s = Settings()
    s.models = ["ocr_ppocr"]
    store = ObjectStore.__new__(ObjectStore)  # never reached: nothing is stored for these
    assert make_working_copy(s, store, ASSET, bomb, 960) is None  # the pixel limit, checked on the header
    assert make_working_copy(s, store, ASSET, photo_jpeg((3000, 2000))[:5000], 960) is None  # truncated


def test_renditions_from_the_copy_report_the_original_size() -> None:
    s = Settings()
    s.models = ["renditions", "efficientnet_lite0"]
    data = photo_jpeg((4000, 3000), orientation=8)
    made = encode_working_copy(data, s, working_side(s) or 0)
    assert made is not None
    jpeg, w, h, src_w, src_h = made
    wc = WorkingCopy(object_key="wk", width=w, height=h, size_bytes=len(jpeg), source_width=src_w,
                     source_height=src_h)
    model = Renditions(s)
    stored: dict[str, bytes] = {}

    class Store:
        def put_bytes(self, key: str, blob: bytes, content_type: str) -> None:
            stored[key] = blob

    model.__dict__["store"] = Store()
    assert model.reads_working_copy(event(wc))
    from_copy = model.render(event(wc), jpeg)
    from_original = model.render(event(None), data)
    assert (from_copy.width, from_copy.height) == (from_original.width, from_original.height) == (3000, 4000)
    assert [(r.name, r.width, r.height) for r in from_copy.items] == \
        [(r.name, r.width, r.height) for r in from_original.items]


def test_old_events_without_a_copy_still_parse() -> None:
    raw = dump(event(None)).replace(b',"working_copy":null', b"")
    assert b"working_copy" not in raw
    assert parse(raw, MediaUploaded).working_copy is None


# ------------------------------------------------------------------------------------------ integration
def _annotations(proc: Processor, ev: MediaUploaded) -> list[tuple[str, str]]:
    items = proc._fetch_prepare(ev)
    assert isinstance(items, list)
    outs, dead = proc._infer_chunk(items)
    assert not dead
    anns = [Annotation.model_validate_json(v) for _, v in outs]
    return [(a.annotation_id, a.payload.model_dump_json()) for a in anns]


@pytest.mark.integration
def test_ingest_makes_the_copy_and_processors_read_it(env: Settings) -> None:
    assert working_side(env) == 960  # the session's models: EfficientNet 224, PDQ 512, faces 640, OCR 960
    store = ObjectStore(env)
    data = photo_jpeg((3000, 2000), orientation=6, seed=1)
    res = Ingestor(env, store).ingest_bytes(data, Metadata(filename="big.jpg"))
    from core import db

    with db.connect(env) as conn:
        raw = conn.execute("SELECT payload FROM outbox WHERE event_id=%s", (f"upl-{res.asset_id[:40]}",)).fetchone()
    assert raw is not None
    ev = parse(bytes(raw["payload"]), MediaUploaded)
    wc = ev.working_copy
    assert wc is not None
    assert wc.object_key == working_copy_key(res.asset_id, 960, env.processor.working_copy_quality)
    assert (wc.width, wc.height, wc.source_width, wc.source_height) == (640, 960, 2000, 3000)
    blob = store.get(wc.object_key)
    assert len(blob) == wc.size_bytes < len(data)
    assert load_image_sized(blob, env.limits.max_image_pixels)[1:] == (640, 960)

    procs = {name: Processor(env, get_model(env, name)) for name in ("pdq", "efficientnet_lite0")}
    try:
        for proc in procs.values():  # input side 512 / 224 <= 960: the copy, never the original
            first = _annotations(proc, ev)
            assert proc.reads == {"original": 0, "original_bytes": 0, "working": 1, "working_bytes": wc.size_bytes,
                                  "working_missing": 0, "head": 0, "head_bytes": 0}
            assert proc.stage_s["fetch"] > 0 and proc.stage_s["decode"] > 0
            assert _annotations(proc, ev) == first  # a replay reads the same copy and says the same
        # a model that needs more than the copy's side reads the original
        wide = Processor(env, WidePdq(env))
        try:
            items = wide._fetch_prepare(ev)
            assert isinstance(items, list) and wide.reads["original"] == 1 and wide.reads["working"] == 0
        finally:
            wide.pool.shutdown()
        # the copy gone (removed, lost): the original, with the same annotation ids
        store.remove(wc.object_key)
        pdq = procs["pdq"]
        fallback = _annotations(pdq, ev)
        assert pdq.reads["working_missing"] == 1 and pdq.reads["original"] == 1
        assert pdq.reads["original_bytes"] == len(data)
        assert [a for a, _ in fallback] == [a for a, _ in _annotations(pdq, ev)]
    finally:
        for proc in procs.values():
            proc.pool.shutdown()
            proc.triton.close()


@pytest.mark.integration
def test_small_images_and_bad_bytes_get_no_copy(env: Settings) -> None:
    ing = Ingestor(env)
    small = ing.ingest_bytes(photo_jpeg((900, 600), seed=2), Metadata(filename="small.jpg"))
    broken = ing.ingest_bytes(photo_jpeg((3000, 2000), seed=3)[:20000], Metadata(filename="cut.jpg"))  # truncated
    from core import db

    with db.connect(env) as conn:
        for res in (small, broken):
            assert res.created
            raw = conn.execute("SELECT payload FROM outbox WHERE event_id=%s",
                               (f"upl-{res.asset_id[:40]}",)).fetchone()
            assert raw is not None
            assert parse(bytes(raw["payload"]), MediaUploaded).working_copy is None
