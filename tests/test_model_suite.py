"""The annotation model suite: video keyframes, faces (MTCNN), OCR (PP-OCR), text embedding (MiniLM).

Unit tests run the models in-process (the same ``Core`` code Triton's python backend runs) on the real
sample photos and on videos made from them with PyAV. The integration tests go through the real
embedded stack: ``models verify`` for every model, then the whole pipeline on photos, rendered text,
videos in four containers and bad media (each bad file must give a dead letter with a clear reason
while everything else flows).
"""

from __future__ import annotations

import importlib.util
import io
import struct
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from PIL import Image
from skimage import data

from core import video
from core.imaging import MediaDecodeError
from core.settings import Settings
from models import registry, suite
from tests.videofactory import make_audio_only, make_video

REPO = Path(__file__).resolve().parent.parent
SUITE = ["efficientnet_lite0", "face_mtcnn", "ocr_ppocr", "text_embed"]


def load_core(name: str) -> Any:
    """triton_repo/<name>/1/model.py's Core (no Triton), on the pulled artifact."""
    registry.pull(Settings(), name)
    path = REPO / "triton_repo" / name / "1" / "model.py"
    spec = importlib.util.spec_from_file_location(f"core_{name}", path)
    assert spec is not None and spec.loader is not None
    module: ModuleType = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Core(str(path.parent), {"intra_op_threads": "1"})


def photo(name: str) -> np.ndarray:
    return np.asarray(getattr(data, name)())


SHOTS = [(photo("chelsea"), 2.0), (photo("astronaut"), 2.0), (photo("coffee"), 2.0)]


# ---- video keyframes -----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["mp4", "mov", "webm", "mkv"])
def test_keyframes_at_scene_cuts_in_every_container(fmt: str) -> None:
    clip = make_video(SHOTS, fmt)
    info = video.probe(clip)
    assert info.width == 320 and info.duration_ms and 5500 <= info.duration_ms <= 6500
    frames = video.keyframes(clip)
    assert [f.pts_ms for f in frames] == [0, 2000, 4000]  # the first frame + the two cuts
    assert all(max(f.image.size) <= 1280 and f.image.mode == "RGB" for f in frames)


def test_long_video_is_capped_and_sampled_by_seeking() -> None:
    # 20 minutes at 1 fps with a keyframe every 10 s: the sampler must stretch its interval and seek
    shots = [(photo(n), 300.0) for n in ("chelsea", "astronaut", "coffee", "rocket")]
    clip = make_video(shots, "mp4", fps=1, size=(96, 64), gop=10)
    assert video.probe(clip).duration_ms == 1_200_000
    sampled = list(video.iter_frames(clip, every_ms=500, max_frames=40))
    assert len(sampled) == 40 and sampled[-1].pts_ms > 1_100_000  # covers the whole video, 40 frames only
    frames = video.keyframes(clip, max_frames=6, max_samples=40)
    assert len(frames) <= 6 and frames[0].pts_ms == 0
    cuts = [f.pts_ms for f in frames if f.score >= 0.12]
    assert len(cuts) == 4  # the first frame and the 3 cuts (found within one sampling interval)


def test_two_hour_video_capped_keyframes_bounded_memory() -> None:
    import threading

    import psutil

    # 2 hours at 1 fps (4 shots of 30 min): 7200 frames, ~1.2 MB of H.264
    shots = [(photo(n), 1800.0) for n in ("chelsea", "astronaut", "coffee", "rocket")]
    clip = make_video(shots, "mp4", fps=1, size=(96, 64), gop=30)
    assert video.probe(clip).duration_ms == 7_200_000
    proc = psutil.Process()
    base = peak = proc.memory_info().rss
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, proc.memory_info().rss)
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        frames = video.keyframes(clip)  # the settings' defaults: at most 16 keyframes
    finally:
        done.set()
        watcher.join()
    assert 4 <= len(frames) <= Settings().video.max_keyframes
    # every cut (0, 30, 60, 90 min) is found within one sampling interval
    for cut in (0, 1_800_000, 3_600_000, 5_400_000):
        assert any(cut <= f.pts_ms <= cut + 60_000 for f in frames), (cut, [f.pts_ms for f in frames])
    assert peak - base < 64 * 2**20  # decoded one frame at a time (measured: ~3 MB)


def test_iter_frames_fixed_rate_with_timestamps() -> None:
    clip = make_video(SHOTS, "mkv", fps=10)
    frames = list(video.iter_frames(clip, every_ms=1000))
    assert [f.pts_ms for f in frames] == [0, 1000, 2000, 3000, 4000, 5000]


@pytest.mark.parametrize(
    ("blob", "reason"),
    [
        (b"", "empty"),
        (make_audio_only(), "no video stream"),
        (make_video(SHOTS, "mp4")[:4000], "corrupt"),
        (b"\x1a\x45\xdf\xa3" + bytes(200), "corrupt"),
    ],
    ids=["zero-bytes", "audio-only", "truncated-mp4", "garbage-mkv"],
)
def test_bad_videos_raise_a_reason(blob: bytes, reason: str) -> None:
    with pytest.raises(MediaDecodeError, match=reason):
        video.keyframes(blob)


def test_video_summary_time_ranges() -> None:
    from processors.video_summary import summarize
    from schemas.events import Box, Face, FaceDetection, OcrText, TextLine

    box = Box(x1=0.1, y1=0.1, x2=0.2, y2=0.2)
    face = FaceDetection(face_count=1, faces=[Face(box=box, score=0.99)])
    none = FaceDetection(face_count=0, faces=[])
    s = summarize([(4000, face), (0, none), (2000, face), (6000, none), (8000, face)])
    assert s.keyframes_ms == [0, 2000, 4000, 6000, 8000]
    (tag,) = s.tags
    assert tag.name == "face" and tag.keyframes == 3 and tag.score == 0.99
    assert [(r.start_ms, r.end_ms) for r in tag.ranges] == [(2000, 4000), (8000, 8000)]
    assert s.numeric == {"face_count": 1.0}
    ocr = summarize([(0, OcrText(text="BREAKING", lines=[TextLine(text="BREAKING", score=0.9, box=box)])),
                     (1000, OcrText(text="", lines=[]))])
    assert [(t.name, t.ranges[0].end_ms) for t in ocr.text_segments] == [("BREAKING", 0)]


# ---- models in-process --------------------------------------------------------------------------


def test_mtcnn_astronaut_one_face_cat_none() -> None:
    from models.frames import letterbox

    core = load_core("face_mtcnn")
    images, sizes = zip(*(letterbox(Image.fromarray(photo(n)), suite.FACE_SIZE) for n in ("astronaut", "chelsea")),
                        strict=True)
    out = core.infer({"IMAGE": np.stack(images), "SIZE": np.stack(sizes)})
    assert out["COUNT"][:, 0].tolist() == [1, 0]
    x1, y1, x2, y2 = out["BOXES"][0, 0] * 512  # the astronaut photo is 512x512
    assert abs(x1 - 181) < 10 and abs(y1 - 62) < 10 and abs(x2 - 268) < 10 and abs(y2 - 172) < 10
    assert out["SCORES"][0, 0] > 0.99


def test_ocr_reads_rendered_text_and_not_photos() -> None:
    from models.frames import letterbox

    core = load_core("ocr_ppocr")
    canvas, size = letterbox(suite.rendered_text(), suite.OCR_SIZE)
    cat, cat_size = letterbox(Image.fromarray(photo("chelsea")), suite.OCR_SIZE)
    out = core.infer({"IMAGE": np.stack([canvas, cat]), "SIZE": np.stack([size, cat_size])})
    lines = [t.decode() for t in out["TEXT"][0, : out["COUNT"][0, 0]]]
    assert suite.squash(" ".join(lines)) == suite.squash(" ".join(suite.OCR_PROBE)), lines
    assert out["COUNT"][1, 0] == 0
    boxes = out["BOXES"][0, : len(lines)]
    assert np.all((boxes >= 0) & (boxes <= 1)) and boxes[0, 1] < boxes[1, 1]  # top line first
    core.close()


def test_minilm_onnx_matches_torch_and_sentence_transformers() -> None:
    torch = pytest.importorskip("torch")
    import onnxruntime as ort

    from models import minilm

    registry.pull(Settings(), "text_embed")
    tok = minilm.Tokenizer(REPO / "triton_repo" / "text_embed" / "tokenizer.json")
    texts = ["a red circle", "a crimson round disc", "stock market report", "word " * 400]
    ids, mask = tok(texts)
    assert ids.shape == (4, minilm.MAX_TOKENS) and ids[0, 0] == 101  # [CLS], truncated to 256
    onnx_path = REPO / "triton_repo" / "text_embed" / "1" / "model.onnx"
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    emb = session.run(["EMBEDDING"], {"INPUT_IDS": ids, "ATTENTION_MASK": mask})[0]
    with torch.no_grad():
        ref = minilm.load_pretrained()(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    assert np.abs(emb - ref).max() < 1e-4
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # reference values of sentence-transformers' encode() for these pairs (notes/weights.md)
    assert abs(float(emb[0] @ emb[1]) - 0.399) < 0.005 and abs(float(emb[0] @ emb[2]) - 0.086) < 0.005
    # padding does not change a sentence's vector
    short_ids, short_mask = tok(texts[:1])
    alone = session.run(["EMBEDDING"], {"INPUT_IDS": short_ids, "ATTENTION_MASK": short_mask})[0]
    assert float(alone[0] @ emb[0]) > 0.99999


def test_search_fields_and_text_composition() -> None:
    from processors.text_embedder import compose, source_text
    from schemas.events import Box, Face, FaceDetection, OcrText, TextLine
    from sinks.search.fields import search_fields

    box = Box(x1=0, y1=0, x2=1, y2=1)
    faces = FaceDetection(face_count=2, faces=[Face(box=box, score=0.9)] * 2)
    ocr = OcrText(text="HELLO\nWORLD", lines=[TextLine(text="HELLO", score=1, box=box)])
    assert search_fields(faces).labels == ["face"] and search_fields(faces).numeric == {"face_count": 2.0}
    assert search_fields(FaceDetection(face_count=0, faces=[])).labels == []
    assert search_fields(ocr).text == "HELLO\nWORLD"
    doc = compose({"ocr_ppocr": source_text(ocr), "metadata": "Press conference", "face_mtcnn": source_text(faces)})
    assert doc.text == "Press conference. face. HELLO WORLD"
    assert doc.sources == ["metadata", "face_mtcnn", "ocr_ppocr"]


def test_registry_covers_every_repo_folder() -> None:
    assert registry.repo_problems(Settings()) == []
    assert set(SUITE) <= set(registry.SPECS)


# ---- through Triton and the pipeline ------------------------------------------------------------


@pytest.mark.integration
def test_models_verify_through_triton(stack_settings: Settings) -> None:
    report = registry.verify(stack_settings, names=[m for m in SUITE if m in stack_settings.triton_models])
    assert report.ok, str(report)
    text = str(report)
    assert "astronaut: 1 face(s)" in text and "cat photo: 0 face(s)" in text
    assert "read back as ['HELLO WORLD 2024', 'Media asset search']" in text


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
    from tests.conftest import isolated_settings

    s = isolated_settings(stack_settings, "t_model_suite")
    s.models = [m for m in SUITE if m in stack_settings.triton_models]
    kafka.ensure_topics(s, kafka.all_topics(s, s.models))
    sup = Supervisor(s, default_workers(s))
    sup.start()
    try:
        ing = Ingestor(s)
        files = {p.stem: p.read_bytes() for p in sample_files}
        good = {
            "astronaut": (files["astronaut"], "astronaut.jpg", None),
            "chelsea": (files["chelsea"], "chelsea.jpg", None),
            "text": (encode(suite.rendered_text(), "PNG"), "slide.png", None),
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
    from tests.modelrun import annotations

    return annotations(s, asset_id, model)


@pytest.mark.integration
def test_pipeline_faces_ocr_and_search(suite_run: tuple[Settings, dict[str, str]]) -> None:
    from sinks.search import get_search_index
    from sinks.search.interface import SearchQuery

    s, ids = suite_run
    (astro,) = _annotations(s, ids["astronaut"], "face_mtcnn")
    assert astro["payload"]["face_count"] == 1 and astro["model_version"] == registry.get_spec("face_mtcnn").version
    assert _annotations(s, ids["chelsea"], "face_mtcnn")[0]["payload"]["face_count"] == 0
    assert _annotations(s, ids["cmyk"], "face_mtcnn")[0]["payload"]["face_count"] == 1
    (text,) = _annotations(s, ids["text"], "ocr_ppocr")
    assert suite.squash(text["payload"]["text"]) == suite.squash(" ".join(suite.OCR_PROBE))
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
