"""NSFW moderation (``nsfw_nudenet``, optional extra): decoding, flag logic, the wrapped graph, availability,
video flags, and the model through Triton and the pipeline.

No explicit image is used anywhere (none is fetched or generated): the flagging path is tested on
synthetic ``RAW`` outputs (what the network returns), the real network only on ordinary photos
(astronaut -> a female face, the cat -> nothing), where it must never flag.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from skimage import data

from core.settings import Settings
from models import nsfw_nudenet as nudenet
from models import registry, store
from models.frames import iou, letterbox
from models.nsfw_nudenet import NsfwNudenet
from schemas.events import NsfwDetection
from tests.support.videofactory import make_video

REPO = Path(__file__).resolve().parent.parent
MODEL = "nsfw_nudenet"
# justified skip: nudenet is an optional extra (AGPL-3.0 licence text); an install made with ARGUS_NSFW=0 has no
# model to test. scripts/test.sh installs it, so CI always runs these tests.

def nudenet_missing() -> bool:
    return nudenet.NsfwNudenet(Settings()).unavailable() is not None


needs_nudenet = pytest.mark.skipif(  # justified: optional AGPL extra, see above
    importlib.util.find_spec("nudenet") is None, reason=nudenet.INSTALL_HINT)
CH = {name: i for i, name in enumerate(nudenet.LABELS)}


def photo(name: str) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(Image.fromarray(np.asarray(getattr(data, name)())).convert("RGB")))


def raw_with(*dets: tuple[str, float, float, float, float, float]) -> np.ndarray:
    """A synthetic RAW [22,2100]: each (label, score, cx, cy, w, h) (canvas pixels) at its own anchor,
    every other anchor scoring 0 (as the network does away from anything)."""
    raw = np.zeros((4 + len(nudenet.LABELS), nudenet.ANCHORS), dtype=np.float32)
    for k, (label, score, cx, cy, w, h) in enumerate(dets):
        a = 17 * k + 3
        raw[:4, a] = (cx, cy, w, h)
        raw[4 + CH[label], a] = score
    return raw


def handler() -> NsfwNudenet:
    return NsfwNudenet(Settings())


FULL = np.array([320, 320], dtype=np.int32)


# ---- decoding and the flag (synthetic outputs) -----------------------------------------------------


def test_explicit_region_over_threshold_flags_nsfw() -> None:
    p = handler().payload(raw_with(("FEMALE_BREAST_EXPOSED", 0.81, 160, 80, 64, 32),
                                   ("FACE_FEMALE", 0.9, 100, 50, 20, 20)), FULL)
    assert p.nsfw is True and p.nsfw_score == pytest.approx(0.81) and p.threshold == 0.5
    assert [r.label for r in p.regions] == ["FACE_FEMALE", "FEMALE_BREAST_EXPOSED"]  # best first
    explicit = p.regions[1]
    assert explicit.class_id == CH["FEMALE_BREAST_EXPOSED"]
    assert (explicit.box.x1, explicit.box.y1, explicit.box.x2, explicit.box.y2) == pytest.approx(
        (0.4, 0.2, 0.6, 0.3))


@pytest.mark.parametrize("label", sorted(nudenet.EXPLICIT))
def test_every_explicit_class_flags(label: str) -> None:
    assert handler().payload(raw_with((label, 0.6, 100, 100, 40, 40)), FULL).nsfw is True


def test_covered_and_non_explicit_regions_never_flag() -> None:
    raw = raw_with(("FEMALE_BREAST_COVERED", 0.97, 100, 100, 40, 40),
                   ("FEMALE_GENITALIA_COVERED", 0.95, 200, 200, 30, 30),
                   ("MALE_BREAST_EXPOSED", 0.93, 60, 250, 40, 40), ("BELLY_EXPOSED", 0.9, 250, 60, 40, 40),
                   ("FACE_MALE", 0.99, 30, 30, 20, 20))
    p = handler().payload(raw, FULL)
    assert p.nsfw is False and p.nsfw_score == 0.0 and len(p.regions) == 5


def test_explicit_region_below_threshold_is_reported_not_flagged() -> None:
    p = handler().payload(raw_with(("BUTTOCKS_EXPOSED", 0.33, 160, 160, 200, 200)), FULL)
    assert p.nsfw is False and p.nsfw_score == pytest.approx(0.33) and [r.label for r in p.regions] == [
        "BUTTOCKS_EXPOSED"]
    assert handler().payload(raw_with(("BUTTOCKS_EXPOSED", 0.5, 160, 160, 200, 200)), FULL).nsfw is True  # >=
    assert handler().payload(raw_with(("ANUS_EXPOSED", 0.2, 160, 160, 20, 20)), FULL).regions == []  # < 0.25


def test_nms_keeps_the_best_of_overlapping_boxes_per_class() -> None:
    raw = raw_with(("FEMALE_BREAST_EXPOSED", 0.7, 100, 100, 60, 60), ("FEMALE_BREAST_EXPOSED", 0.9, 104, 102, 60, 60),
                   ("FEMALE_BREAST_EXPOSED", 0.6, 250, 250, 40, 40),  # same class, elsewhere: kept
                   ("FACE_FEMALE", 0.8, 102, 100, 58, 60))  # another class on the same spot: kept (per-class NMS)
    regions = nudenet.decode(raw, FULL)
    assert [(r.label, round(r.score, 2)) for r in regions] == [
        ("FEMALE_BREAST_EXPOSED", 0.9), ("FACE_FEMALE", 0.8), ("FEMALE_BREAST_EXPOSED", 0.6)]


def test_boxes_clipped_to_the_content_and_normalised_to_it() -> None:
    content = np.array([320, 200], dtype=np.int32)  # a 3:2 frame letterboxed: rows 200..319 are padding
    raw = raw_with(("FACE_FEMALE", 0.9, 300, 190, 80, 40),  # crosses the right edge and the padding
                   ("FEET_EXPOSED", 0.8, 10, 5, 40, 30),  # crosses the top-left corner
                   ("FACE_MALE", 0.95, 160, 260, 40, 40))  # entirely in the padding: dropped
    regions = {r.label: r.box for r in nudenet.decode(raw, content)}
    assert set(regions) == {"FACE_FEMALE", "FEET_EXPOSED"}
    assert regions["FACE_FEMALE"] == pytest.approx((260 / 320, 170 / 200, 1.0, 1.0))
    assert regions["FEET_EXPOSED"] == pytest.approx((0.0, 0.0, 30 / 320, 20 / 200))


def test_handler_sends_only_the_image_to_triton() -> None:
    sent: dict[str, Any] = {}

    class FakeTriton:
        def infer(self, model: str, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
            sent.update(model=model, inputs=sorted(inputs), outputs=outputs)
            return {"RAW": np.stack([raw_with(("FACE_FEMALE", 0.9, 100, 50, 20, 20))] * len(inputs["IMAGE"]))}

    h = handler()
    canvas, size = letterbox(Image.fromarray(photo("chelsea")), nudenet.SIZE)
    out = h.infer(FakeTriton(), {"IMAGE": np.stack([canvas, canvas]), "SIZE": np.stack([size, FULL])})  # type: ignore[arg-type]
    assert sent == {"model": MODEL, "inputs": ["IMAGE"], "outputs": ["RAW"]}
    a, b = h.to_payloads(out, 2)
    assert isinstance(a, NsfwDetection) and isinstance(b, NsfwDetection)
    assert a.regions[0].box.y2 > b.regions[0].box.y2  # normalised to each frame's own content


@settings(max_examples=60, deadline=None)
@given(
    dets=st.lists(st.tuples(st.sampled_from(nudenet.LABELS), st.floats(0.0, 1.0), st.floats(-50, 370),
                            st.floats(-50, 370), st.floats(0, 400), st.floats(0, 400)), max_size=25),
    content=st.tuples(st.integers(1, 320), st.integers(1, 320)),
)
def test_decode_properties(dets: list[tuple[str, float, float, float, float, float]], content: tuple[int, int]) -> None:
    regions = nudenet.decode(raw_with(*dets), content)
    scores = [r.score for r in regions]
    assert scores == sorted(scores, reverse=True) and all(s >= nudenet.REGION_THRESHOLD for s in scores)
    for r in regions:
        x1, y1, x2, y2 = r.box
        assert 0.0 <= x1 < x2 <= 1.0 and 0.0 <= y1 < y2 <= 1.0 and nudenet.LABELS[r.class_id] == r.label
    for i, r in enumerate(regions):  # NMS: no two kept boxes of one class overlap beyond the IoU threshold
        same = [o for o in regions[i + 1:] if o.class_id == r.class_id]
        if same:
            assert iou(np.array(r.box), np.array([o.box for o in same])).max() <= nudenet.IOU_THRESHOLD
    p = NsfwNudenet(Settings()).payload(raw_with(*dets), np.array(content))  # validates against the schema
    assert p.nsfw == any(r.label in nudenet.EXPLICIT and r.score >= 0.5 for r in regions)


# ---- video summary ------------------------------------------------------------------------------------


def test_video_is_flagged_when_any_keyframe_is() -> None:
    from models.video_summary import summarize

    h = handler()
    clean = h.payload(raw_with(("FACE_FEMALE", 0.9, 100, 50, 20, 20)), FULL)
    flagged = h.payload(raw_with(("MALE_GENITALIA_EXPOSED", 0.77, 160, 200, 40, 40)), FULL)
    low = h.payload(raw_with(("BUTTOCKS_EXPOSED", 0.3, 160, 200, 40, 40)), FULL)
    s = summarize([(0, clean), (2000, flagged), (4000, low), (6000, clean)])
    assert s.flags == ["nsfw"] and s.numeric["nsfw"] == pytest.approx(0.77)
    (tag,) = [t for t in s.tags if t.name == "nsfw"]
    assert [(r.start_ms, r.end_ms) for r in tag.ranges] == [(2000, 2000)]
    quiet = summarize([(0, clean), (2000, low)])
    assert quiet.flags == [] and quiet.numeric["nsfw"] == pytest.approx(0.3) and not quiet.tags


# ---- availability (simulated fault: the optional package missing) ----------------------------------


def test_unavailable_when_the_optional_package_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """SIMULATED FAULT: importlib.util.find_spec("nudenet") -> None, as on an installation without the
    extra. list_models and pull must say why; Triton, the processors and verify leave the model out."""
    from argus.workers import default_workers

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "nudenet" else real(name, *a))
    s = Settings()
    assert MODEL in registry.enabled_models(s)  # on by default
    (row,) = [r for r in store.list_models(s) if r.name == MODEL]
    assert not row.available and row.reason == nudenet.INSTALL_HINT
    assert "optional extra not installed: pip install --no-deps nudenet==3.4.2" in row.reason
    assert "AGPL-3.0" in row.reason and row.licence.startswith("AGPL-3.0")
    with pytest.raises(store.ModelUnavailable, match="nsfw_nudenet: optional extra not installed"):
        store.pull(s, MODEL)
    assert registry.unavailable_models(s, registry.enabled_models(s)).get(MODEL) == nudenet.INSTALL_HINT
    assert MODEL not in registry.triton_models(s)
    assert f"processor-{MODEL}" not in {w.name for w in default_workers(s)}
    with pytest.raises(FileNotFoundError, match="optional extra not installed"):
        nudenet.NsfwNudenet(Settings()).weights()


# ---- the real network in-process (ordinary photos only) ---------------------------------------------


@pytest.fixture(scope="module")
def session() -> Any:
    from models.inprocess import InProcessModel

    if nudenet_missing():  # justified: optional extra left out (ARGUS_NSFW=0); CI installs it
        pytest.skip(nudenet.INSTALL_HINT)  # justified: optional extra left out (ARGUS_NSFW=0)
    result = store.pull(Settings(), MODEL)
    assert result.version == f"nudenet-{store.sha256_file(nudenet.NsfwNudenet(Settings()).weights())[:8]}"
    return InProcessModel(MODEL, threads=1)


@needs_nudenet
def test_labels_match_nudenet_source_onnx_metadata_and_labels_txt() -> None:
    import onnx

    src = importlib.import_module("nudenet.nudenet")  # imports cv2 (opencv-python-headless here)
    assert list(nudenet.LABELS) == list(getattr(src, "__labels"))
    assert nudenet.class_names(onnx.load(str(nudenet.NsfwNudenet(Settings()).weights()))) == list(nudenet.LABELS)
    assert (REPO / "triton_repo" / MODEL / "labels.txt").read_text().splitlines() == list(nudenet.LABELS)


@needs_nudenet
def test_wrapped_graph_io_and_dynamic_batch(session: Any) -> None:
    import onnx

    model = onnx.load(str(session.path))
    (inp,), (out,) = model.graph.input, model.graph.output
    assert inp.name == "IMAGE" and inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim] == ["batch", 320, 320, 3]
    assert out.name == "RAW" and [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim] == [
        "batch", 22, 2100]
    imgs = np.stack([letterbox(Image.fromarray(photo(n)), 320)[0] for n in ("astronaut", "chelsea", "coffee")])
    batch = session.infer(imgs)["RAW"]
    alone = np.concatenate([session.infer(imgs[i : i + 1])["RAW"] for i in range(3)])
    assert batch.shape == (3, 22, 2100) and np.abs(batch - alone).max() < 1e-4


@needs_nudenet
@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea"])
def test_same_detections_as_nudenet_detect(session: Any, name: str) -> None:
    """The wrapped graph + our decoding give NudeNet's own ``NudeDetector().detect()`` result when fed the
    pixels NudeNet's preprocessing makes (pad to square bottom-right, cv2 resize to 320). detect() is given
    an RGB array: its cvtColor(RGBA2BGR) + swapRB then hand the network RGB, as Ultralytics trained it
    (given a BGR file it feeds BGR: astronaut 0.72 instead of 0.81; triton_repo/nsfw_nudenet/README.md)."""
    from nudenet import NudeDetector
    from nudenet.nudenet import _read_image

    rgb = photo(name)
    detector = NudeDetector()
    ref = detector.detect(rgb)
    blob = _read_image(rgb, 320)[0]  # float [1,3,320,320] in 0..1, RGB
    pixels = np.rint(blob[0].transpose(1, 2, 0) * 255).astype(np.uint8)
    assert np.abs(pixels / 255.0 - blob[0].transpose(1, 2, 0)).max() < 1e-6  # the blob is uint8 / 255 exactly
    raw = session.infer(pixels[None])["RAW"]
    ref_raw = detector.onnx_session.run(None, {detector.input_name: blob})[0]
    assert np.abs(raw - ref_raw).max() < 1e-4  # Cast, /255 and NCHW in-graph == NudeNet's blob
    h, w = rgb.shape[:2]
    side = max(h, w)
    regions = nudenet.decode(raw[0], (320 * w / side, 320 * h / side))
    ours = [(r.label, r.score, [r.box[0] * w, r.box[1] * h, (r.box[2] - r.box[0]) * w, (r.box[3] - r.box[1]) * h])
            for r in regions]
    assert [(d["class"], round(d["score"], 4)) for d in ref] == [(lb, round(s, 4)) for lb, s, _ in ours]
    for d, (_, _, box) in zip(ref, ours, strict=True):
        assert np.abs(np.array(d["box"]) - np.array(box)).max() <= 1.5  # detect() truncates to int pixels
    if name == "astronaut":
        assert ref[0]["class"] == "FACE_FEMALE" and abs(ref[0]["score"] - 0.81) < 0.01
    if name == "chelsea":
        assert ref == []


@needs_nudenet
def test_production_preprocessing_on_real_photos(session: Any) -> None:
    """The processor's path (frames.letterbox: PIL, aspect kept) on ordinary photos: astronaut -> a female
    face where NudeNet puts it, the cat and the rocket -> nothing; nothing flagged anywhere."""
    h = handler()
    found = {}
    for name in ("astronaut", "chelsea", "rocket", "coffee", "camera"):
        canvas, size = letterbox(Image.fromarray(photo(name)), nudenet.SIZE)
        found[name] = h.payload(session.infer(canvas[None])["RAW"][0], size)
    (face,) = found["astronaut"].regions
    assert face.label == "FACE_FEMALE" and face.score > 0.7
    # NudeNet's detect(): [173, 82, 100, 97] (x, y, w, h) on the 512x512 photo
    assert np.abs(np.array([face.box.x1, face.box.y1, face.box.x2, face.box.y2]) * 512
                  - np.array([173, 82, 273, 179])).max() < 6
    assert found["chelsea"].regions == [] and found["rocket"].regions == []
    assert not any(p.nsfw for p in found.values()), {k: p.nsfw_score for k, p in found.items()}
    assert all(p.nsfw_score < 0.45 for p in found.values())


# ---- through Triton and the pipeline ------------------------------------------------------------------


@pytest.fixture(scope="module")
def nsfw_run(stack_settings: Settings, sample_files: list[Path]) -> Iterator[tuple[Settings, dict[str, str]]]:
    """The nsfw_nudenet processor + sinks on an isolated database: every sample photo and a video in."""
    from tests.support.modelrun import model_run
    from tests.support.stack import load_models

    if nudenet_missing():  # justified: optional extra left out (ARGUS_NSFW=0); CI installs it
        pytest.skip(nudenet.INSTALL_HINT)  # justified: optional extra left out (ARGUS_NSFW=0)
    load_models(stack_settings, [MODEL])
    media = {p.stem: (p.read_bytes(), p.name) for p in sample_files}
    shots = [(photo("chelsea"), 2.0), (photo("astronaut"), 2.0), (photo("coffee"), 2.0)]
    media["video"] = (make_video(shots, "mp4"), "clip.mp4")
    with model_run(stack_settings, "t_model_nsfw", [MODEL], media) as run:
        yield run


def _annotations(s: Settings, asset_id: str) -> list[dict[str, Any]]:
    from tests.support.modelrun import annotations

    return annotations(s, asset_id, MODEL)


@pytest.mark.integration
def test_verify_through_triton(stack_settings: Settings) -> None:
    from tests.support.stack import load_models

    if nudenet_missing():  # justified: optional extra left out (ARGUS_NSFW=0); CI installs it
        pytest.skip(nudenet.INSTALL_HINT)  # justified: optional extra left out (ARGUS_NSFW=0)
    load_models(stack_settings, [MODEL])
    report = store.verify(stack_settings, names=[MODEL])
    print(report)
    assert report.ok, str(report)
    assert "astronaut: FACE_FEMALE" in str(report) and "cat photo: 0 region(s)" in str(report)


@pytest.mark.integration
def test_pipeline_photos_and_video(nsfw_run: tuple[Settings, dict[str, str]]) -> None:
    from core import db

    s, ids = nsfw_run
    (astro,) = _annotations(s, ids["astronaut"])
    assert astro["model_version"] == registry.get_model(Settings(), MODEL).version
    payload = NsfwDetection.model_validate(astro["payload"])
    assert [r.label for r in payload.regions] == ["FACE_FEMALE"] and payload.nsfw is False
    assert _annotations(s, ids["chelsea"])[0]["payload"]["regions"] == []
    rows = _annotations(s, ids["video"])
    summary, frames = rows[0], rows[1:]
    assert summary["keyframe_ms"] is None and summary["payload"]["kind"] == "video_summary"
    assert [r["keyframe_ms"] for r in frames] == summary["payload"]["keyframes_ms"] == [0, 2000, 4000]
    assert frames[1]["payload"]["regions"][0]["label"] == "FACE_FEMALE"  # the astronaut shot
    assert summary["payload"]["flags"] == []
    with db.connect(s) as conn:
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM annotations WHERE model=%s) AS n, "
            "(SELECT count(*) FROM dead_letters) AS dead", (MODEL,)).fetchone()
        flagged = conn.execute("SELECT asset_id FROM annotations WHERE model=%s AND (payload->>'nsfw')::boolean",
                               (MODEL,)).fetchall()
    scores = {k: [r["payload"].get("nsfw_score") for r in _annotations(s, v)] for k, v in ids.items()}
    print("nsfw_score per asset:", scores)
    assert counts is not None
    # every photo + the video's 3 keyframes + its summary, nothing dead-lettered, nothing flagged
    assert (counts["n"], counts["dead"], flagged) == (len(ids) + 3, 0, [])


@pytest.mark.integration
def test_search_nsfw_filter_keeps_unflagged_assets(nsfw_run: tuple[Settings, dict[str, str]]) -> None:
    from retrieval.search import get_search_index
    from retrieval.search.interface import NumericRange, SearchQuery

    s, ids = nsfw_run
    index = get_search_index(s)
    wanted = tuple(ids.values())
    scored = SearchQuery(asset_ids=wanted, numeric=(NumericRange("nsfw"),), limit=100)  # docs with an nsfw score
    deadline = time.monotonic() + 60
    while True:  # the search sink indexes after the PostgreSQL sink: eventually consistent
        indexed = {h.asset_id for h in index.search(scored).hits}
        if indexed == set(wanted) or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    assert indexed == set(wanted)
    excluded = index.search(SearchQuery(asset_ids=wanted, flags=(("nsfw", "exclude"),), limit=100)).hits
    assert {h.asset_id for h in excluded} == set(wanted)
    assert index.search(SearchQuery(asset_ids=wanted, flags=(("nsfw", "only"),), limit=100)).hits == []
