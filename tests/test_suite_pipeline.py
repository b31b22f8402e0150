"""The session's model suite (faces, OCR, text embedding, labels) through the whole pipeline on the real embedded
stack: photos, rendered text, videos in four containers and bad media (each bad file must give a dead letter with a
clear reason while everything else flows), then search over what the models produced. Each model's own tests are
in tests/test_model_<name>.py.
"""

from __future__ import annotations

import io
import struct
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from core.settings import Settings
from models import probes, registry
from tests.support.models import photo
from tests.support.videofactory import make_audio_only, make_video

SHOTS = [(photo("chelsea"), 2.0), (photo("astronaut"), 2.0), (photo("coffee"), 2.0)]
SUITE = ["efficientnet_lite0", "face_mtcnn", "ocr_ppocr", "text_embed"]






def png_bomb(width: int = 30000, height: int = 30000) -> bytes:
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def encode(img: Image.Image, fmt: str, **kw: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def suite_run(stack_settings: Settings, sample_files: list[Path]) -> Iterator[tuple[Settings, dict[str, str]]]:
    """The suite's processors + sinks on an isolated database; photos, text, videos and bad media in."""
    from argus import pipeline
    from argus.workers import Supervisor, default_workers
    from core import kafka
    from producers.ingest import Ingestor, Metadata
    from tests.support.stack import isolated_settings

    s = isolated_settings(stack_settings, "t_model_suite")
    s.models = [m for m in SUITE if m in registry.triton_models(stack_settings)]
    kafka.ensure_topics(s, kafka.all_topics(s, s.models))
    sup = Supervisor(s, default_workers(s))
    sup.start()
    try:
        ing = Ingestor(s)
        files = {p.stem: p.read_bytes() for p in sample_files}
        good = {
            "astronaut": (files["astronaut"], "astronaut.jpg", None),
            "chelsea": (files["chelsea"], "chelsea.jpg", None),
            "text": (encode(probes.rendered_text(), "PNG"), "slide.png", None),
            "mp4": (make_video(SHOTS, "mp4"), "clip.mp4", "Cat then astronaut"),
            "webm": (make_video(SHOTS[::-1], "webm"), "clip.webm", None),
            "mov_named_jpg": (make_video(SHOTS[1:], "mov"), "wrong-extension.jpg", None),  # sniffed, not trusted
            "mkv_long": (make_video([(photo("rocket"), 400.0), (photo("chelsea"), 200.0)], "mkv", fps=1,
                                    size=(96, 64), gop=10), "long.mkv", None),
            "cmyk": (encode(Image.fromarray(photo("astronaut")).convert("CMYK"), "JPEG"), "cmyk.jpg", None),
            "rgba": (encode(Image.fromarray(photo("coffee")).convert("RGBA"), "PNG"), "alpha.png", None),
            "gif": (encode(Image.fromarray(photo("chelsea")), "GIF", save_all=True,
                           append_images=[Image.fromarray(photo("coffee"))], duration=100), "anim.gif", None),
            "png16": (encode(Image.fromarray(photo("camera").astype(np.uint16) * 257), "PNG"), "deep.png", None),
        }
        bad = {
            "corrupt_mp4": make_video(SHOTS, "mp4")[:5000],
            "audio_only": make_audio_only(),
            "truncated_jpeg": files["rocket"][: len(files["rocket"]) // 3],
            "bomb": png_bomb(),
        }
        ids: dict[str, str] = {}
        for key, (blob, name, title) in good.items():
            ids[key] = ing.ingest_bytes(blob, Metadata(filename=name, title=title)).asset_id
        for key, blob in bad.items():
            ids[key] = ing.ingest_bytes(blob, Metadata(filename=f"{key}.bin")).asset_id
        for model in s.models:
            targets = list(ids.values()) if model != "text_embed" else [ids[k] for k in good]
            final = pipeline.wait_until_done(s, targets, model, timeout=600)
            assert final.done, f"{model}: {final}; dead workers: {sup.dead()}"
        yield s, ids
    finally:
        sup.stop()


def _annotations(s: Settings, asset_id: str, model: str) -> list[dict[str, Any]]:
    from tests.support.modelrun import annotations

    return annotations(s, asset_id, model)


@pytest.mark.integration
def test_pipeline_faces_ocr_and_search(suite_run: tuple[Settings, dict[str, str]]) -> None:
    from retrieval.search import get_search_index
    from retrieval.search.interface import SearchQuery

    s, ids = suite_run
    (astro,) = _annotations(s, ids["astronaut"], "face_mtcnn")
    assert astro["payload"]["face_count"] == 1
    assert astro["model_version"] == registry.get_model(Settings(), "face_mtcnn").version
    assert _annotations(s, ids["chelsea"], "face_mtcnn")[0]["payload"]["face_count"] == 0
    assert _annotations(s, ids["cmyk"], "face_mtcnn")[0]["payload"]["face_count"] == 1
    (text,) = _annotations(s, ids["text"], "ocr_ppocr")
    assert probes.squash(text["payload"]["text"]) == probes.squash(" ".join(probes.OCR_PROBE))
    hits = get_search_index(s).search(SearchQuery(text="asset search", limit=5)).hits
    assert hits and hits[0].asset_id == ids["text"]  # OCR text is in full-text search
    faces = get_search_index(s).search(SearchQuery(labels=("face",), limit=50)).hits
    assert {ids["astronaut"], ids["cmyk"]} <= {h.asset_id for h in faces}
    assert ids["chelsea"] not in {h.asset_id for h in faces}


@pytest.mark.integration
def test_videos_get_keyframe_annotations_and_a_summary(suite_run: tuple[Settings, dict[str, str]]) -> None:
    s, ids = suite_run
    for key in ("mp4", "webm", "mov_named_jpg"):
        for model in ("efficientnet_lite0", "face_mtcnn", "ocr_ppocr"):
            rows = _annotations(s, ids[key], model)
            summary, frames = rows[0], rows[1:]
            assert summary["keyframe_ms"] is None and summary["payload"]["kind"] == "video_summary"
            assert [r["keyframe_ms"] for r in frames] == summary["payload"]["keyframes_ms"]
            assert len(frames) == (3 if key != "mov_named_jpg" else 2), (key, model)
    face = _annotations(s, ids["mp4"], "face_mtcnn")[0]["payload"]
    (tag,) = face["tags"]  # cat (0-2 s), astronaut (2-4 s), coffee (4-6 s): one face, at 2 s only
    assert tag["name"] == "face" and tag["ranges"] == [{"start_ms": 2000, "end_ms": 2000}]
    assert face["numeric"]["face_count"] == 1
    labels = _annotations(s, ids["mp4"], "efficientnet_lite0")[0]["payload"]
    assert any("cat" in t["name"].lower() and t["ranges"][0]["start_ms"] == 0 for t in labels["tags"])
    assert len(labels["embedding"]) == 1280
    long_rows = _annotations(s, ids["mkv_long"], "efficientnet_lite0")
    assert 2 <= len(long_rows) - 1 <= s.video.max_keyframes  # 10-minute video: capped keyframes


@pytest.mark.integration
def test_bad_media_dead_lettered_with_reasons(suite_run: tuple[Settings, dict[str, str]]) -> None:
    from core import db

    s, ids = suite_run
    expected = {"corrupt_mp4": "corrupt", "audio_only": "no video stream", "truncated_jpeg": "truncated",
                "bomb": "too large"}
    with db.connect(s) as conn:
        for key, reason in expected.items():
            rows = conn.execute("SELECT model, reason FROM dead_letters WHERE asset_id=%s", (ids[key],)).fetchall()
            models = {r["model"] for r in rows}
            assert {"efficientnet_lite0", "face_mtcnn", "ocr_ppocr"} <= models, (key, rows)
            assert all(reason in r["reason"].lower() for r in rows), (key, rows)
        for key in ("cmyk", "rgba", "gif", "png16", "mov_named_jpg", "mkv_long"):
            n = conn.execute("SELECT count(*) AS n FROM dead_letters WHERE asset_id=%s", (ids[key],)).fetchone()["n"]
            assert n == 0, key


@pytest.mark.integration
def test_semantic_text_search(suite_run: tuple[Settings, dict[str, str]]) -> None:
    from retrieval.semantic import embed_text, semantic_search

    s, ids = suite_run
    vec = embed_text(s, "a photo of a cat")
    assert len(vec) == 384 and abs(float(np.linalg.norm(vec)) - 1.0) < 1e-4
    # the asset's text embedding is recomputed as each model's text lands (OCR last, usually):
    # eventually consistent by design, so wait for the embedding that includes the OCR lines
    deadline = time.monotonic() + 120
    while True:
        hits = semantic_search(s, "a slide that says hello world", k=3)
        if (hits and hits[0].asset_id == ids["text"]) or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    assert hits[0].asset_id == ids["text"]
    rows = _annotations(s, ids["mp4"], "text_embed")
    assert any("metadata" in r["payload"]["sources"] for r in rows)  # the title went into the text
