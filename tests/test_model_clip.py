"""CLIP (open_clip ViT-B-32): availability, ONNX export, tokenizer, zero-shot maths, serving and wiring.

IMPORTANT: no CLIP weights exist on this machine (none in any package registry, no hub). These tests build
ViT-B-32 with RANDOM weights (``torch.manual_seed(0)``, saved as a checkpoint under tmp) and check serving,
shapes and wiring only: availability rules, that the ONNX export computes exactly what open_clip computes on
the same model, that the client-side tokenizer and preprocessing equal open_clip's, the zero-shot head
maths, Triton serving of ``clip``/``clip_text``, the processor end to end into PostgreSQL and the
``/search/clip`` endpoint. They NEVER check retrieval or zero-shot quality (random weights have none), and
the verify check itself says so ("weights look RANDOM, retrieval quality NOT checked").

The integration tests pull the random checkpoint into ``triton_repo/clip*/1/`` (git-ignored artifacts; a
later pull of real weights rebuilds them, the version follows the checkpoint's sha256).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image
from skimage import data

from core.settings import Settings
from models import clip, registry, store
from models.clip import Clip, Head, class_vectors, head_flags, head_labels, load_heads, zero_shot_probs

REPO = Path(__file__).resolve().parent.parent
HEADS = ("disturbing", "meme", "action")


@pytest.fixture(scope="module")
def random_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A RANDOMLY initialised ViT-B-32 saved like an open_clip checkpoint (~600 MB, built once)."""
    import torch

    oc = clip._import_open_clip()
    torch.manual_seed(0)
    model = oc.create_model("ViT-B-32", pretrained=None)
    path = tmp_path_factory.mktemp("clip") / "vit-b-32-RANDOM.pt"
    torch.save(model.state_dict(), path)
    return path


def with_weights(base: Settings, ckpt: Path | None) -> Settings:
    s = base.model_copy(deep=True)
    s.clip.weights = ckpt
    return s


# ---- availability ----------------------------------------------------------------------------------


def test_unavailable_without_weights_never_served() -> None:
    from argus.workers import default_workers

    s = Settings()
    s.clip.weights, s.clip.pretrained = None, None
    s.triton.models = None
    s.models = ["efficientnet_lite0", "clip"]
    why = clip.unavailable(s)
    assert why is not None and "ARGUS_CLIP__WEIGHTS" in why
    rows = {r.name: r for r in store.list_models(s)}
    for name in ("clip", "clip_text"):
        assert not rows[name].available and rows[name].reason == why
        assert rows[name].source == "file:ARGUS_CLIP__WEIGHTS"
        with pytest.raises(store.ModelUnavailable, match="ARGUS_CLIP__WEIGHTS"):
            store.pull(s, name)
    assert "clip" not in registry.triton_models(s) and "clip_text" not in registry.triton_models(s)
    names = [w.name for w in default_workers(s)]
    assert "processor-efficientnet_lite0" in names and not any("clip" in n for n in names)

    s.clip.weights = Path("/nonexistent/clip.pt")
    assert "no such file" in (clip.unavailable(s) or "")
    assert not any("clip" in w.name for w in default_workers(s))


def test_available_with_weights_starts_processor_and_companion(random_ckpt: Path) -> None:
    from argus.workers import default_workers

    s = with_weights(Settings(), random_ckpt)
    s.triton.models = None
    s.models = ["clip"]
    assert clip.unavailable(s) is None
    assert registry.triton_models(s) == ["clip", "clip_text"]  # the text tower comes along (zero-shot prompts, queries)
    assert "processor-clip" in [w.name for w in default_workers(s)]
    assert not any("clip_text" in w.name for w in default_workers(s))  # no processor of its own


def test_pretrained_tag_must_exist() -> None:
    s = Settings()
    s.clip.weights, s.clip.pretrained = None, "no-such-tag"
    with pytest.raises(store.ModelUnavailable, match="no pretrained tag 'no-such-tag'.*laion2b_s34b_b79k"):
        clip.weights(s)


# ---- client side: tokenizer, preprocessing ----------------------------------------------------------


def test_tokenizer_equals_open_clip() -> None:
    oc = clip._import_open_clip()
    texts = ["a photo of a cat", "Ünïcödé &amp; HTML  spaces\tand CAPS", "word " * 200, "", "日本語のテキスト",
             "it's 4.5 o'clock, isn't it?!", "a photo of a person playing guitar."]
    ours = clip.tokenizer_for("ViT-B-32")(texts)
    assert ours.dtype == np.int64 and ours.shape == (len(texts), 77)
    np.testing.assert_array_equal(ours, oc.get_tokenizer("ViT-B-32")(texts).numpy())
    assert ours[2, -1] == 49407  # truncated: the end token is kept


def test_preprocessing_equals_open_clip() -> None:
    oc = clip._import_open_clip()
    _, _, preprocess = oc.create_model_and_transforms("ViT-B-32", pretrained=None)
    mean = np.array((0.48145466, 0.4578275, 0.40821073)).reshape(3, 1, 1)
    std = np.array((0.26862954, 0.26130258, 0.27577711)).reshape(3, 1, 1)
    for name in ("chelsea", "astronaut", "coffee", "rocket"):
        img = Image.fromarray(getattr(data, name)())
        ours = clip.to_clip_input(img)
        assert ours.shape == (224, 224, 3) and ours.dtype == np.uint8
        theirs = ((preprocess(img).numpy() * std + mean) * 255).transpose(1, 2, 0)
        assert np.abs(theirs - ours).max() < 1e-3, name  # same pixels; normalisation happens in the graph


# ---- ONNX export == open_clip ------------------------------------------------------------------------


def test_onnx_export_matches_open_clip(random_ckpt: Path, tmp_path: Path) -> None:
    """The exported graphs compute what open_clip computes on the same (random) model: faithful export."""
    import onnxruntime as ort
    import torch

    s = with_weights(Settings(), random_ckpt)
    (tmp_path / "img").mkdir()
    (tmp_path / "txt").mkdir()
    clip.build_image(tmp_path / "img" / "model.onnx", s)
    clip.build_text(tmp_path / "txt" / "model.onnx", s)
    meta = json.loads((tmp_path / "img" / clip.META).read_text())
    assert meta["arch"] == "ViT-B-32" and meta["embed_dim"] == 512 and clip.looks_untrained(meta)

    oc = clip._import_open_clip()
    model, _, preprocess = oc.create_model_and_transforms("ViT-B-32", pretrained=str(random_ckpt))
    model.eval()
    images = [Image.fromarray(getattr(data, n)()) for n in ("chelsea", "astronaut", "coffee")]
    texts = ["a photo of a cat", "a photo of an astronaut", "a cup of coffee"]
    with torch.no_grad():
        ref_img = model.encode_image(torch.stack([preprocess(im) for im in images]), normalize=True).numpy()
        ref_txt = model.encode_text(oc.get_tokenizer("ViT-B-32")(texts), normalize=True).numpy()

    img_sess = ort.InferenceSession(str(tmp_path / "img" / "model.onnx"), providers=["CPUExecutionProvider"])
    txt_sess = ort.InferenceSession(str(tmp_path / "txt" / "model.onnx"), providers=["CPUExecutionProvider"])
    emb_img = img_sess.run(["EMBEDDING"], {"IMAGE": np.stack([clip.to_clip_input(im) for im in images])})[0]
    emb_txt = txt_sess.run(["EMBEDDING"], {"TOKENS": clip.tokenizer_for("ViT-B-32")(texts)})[0]
    assert emb_img.shape == (3, 512) and emb_txt.shape == (3, 512)
    assert np.abs(emb_img - ref_img).max() < 1e-4
    assert np.abs(emb_txt - ref_txt).max() < 1e-4
    np.testing.assert_allclose(np.linalg.norm(emb_img, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(emb_txt, axis=1), 1.0, atol=1e-5)


# ---- zero-shot heads ---------------------------------------------------------------------------------


def test_zero_shot_prompt_file() -> None:
    heads = {h.name: h for h in load_heads(REPO / "triton_repo" / "clip" / "zero_shot.json")}
    assert tuple(heads) == HEADS
    assert heads["disturbing"].binary and heads["disturbing"].classes == ("disturbing", "neutral")
    assert heads["meme"].binary and heads["meme"].classes == ("meme", "photo")
    action = heads["action"]
    assert not action.binary and len(action.classes) == 400  # Kinetics-400
    assert action.prompts[action.classes.index("playing guitar")] == ("a photo of a person playing guitar.",)
    assert all(len(p) >= 5 for h in ("disturbing", "meme") for p in heads[h].prompts)


unit_rows = arrays(np.float64, st.tuples(st.integers(1, 4), st.just(8)),
                   elements=st.floats(-1, 1, allow_nan=False)).filter(lambda a: bool(np.all(np.abs(a).sum(1) > 1e-3)))


def _normalise(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=1, keepdims=True)


@hsettings(max_examples=60, deadline=None)
@given(images=unit_rows, prompts=arrays(np.float64, (5, 8), elements=st.floats(-1, 1, allow_nan=False)),
       split=st.integers(1, 4))
def test_zero_shot_maths_properties(images: np.ndarray, prompts: np.ndarray, split: int) -> None:
    prompts = prompts + 2 * np.eye(5, 8)  # the diagonal stays >= 1: never an all-zero row
    vecs = class_vectors(_normalise(prompts), [split, 5 - split])
    assert vecs.shape == (2, 8)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    probs = zero_shot_probs(_normalise(images), vecs)
    assert probs.shape == (len(images), 2) and np.all((probs >= 0) & (probs <= 1))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)

    head = Head("meme", ("meme", "photo"), (("a meme",), ("a photo",)))
    for row in probs:
        labels = head_labels(head, row, top_k=5)
        assert {lb.name for lb in labels} == {"meme", "photo"}
        assert math.isclose(labels[0].score + labels[1].score, 1.0, abs_tol=2e-5)  # complementary
        assert labels[0].score >= labels[1].score  # best first
        assert next(lb.score for lb in labels if lb.name == "meme") == pytest.approx(row[0], abs=1e-5)


@hsettings(max_examples=40, deadline=None)
@given(images=unit_rows, classes=arrays(np.float64, (7, 8), elements=st.floats(-1, 1, allow_nan=False)))
def test_multiclass_head_top_k(images: np.ndarray, classes: np.ndarray) -> None:
    vecs = _normalise(classes + 2 * np.eye(7, 8))  # the diagonal stays >= 1: never an all-zero row
    probs = zero_shot_probs(_normalise(images), vecs)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)
    head = Head("action", tuple(f"a{i}" for i in range(7)), tuple((f"p{i}",) for i in range(7)))
    for row in probs:
        labels = head_labels(head, row, top_k=3)
        assert len(labels) == 3 and [lb.score for lb in labels] == sorted((lb.score for lb in labels), reverse=True)
        assert labels[0].class_id == int(np.argmax(row))


def test_flags_follow_thresholds() -> None:
    from schemas.events import Label

    s = Settings()
    s.clip.disturbing_threshold, s.clip.meme_threshold, s.clip.action_threshold = 0.6, 0.5, 0.3
    zs = {"disturbing": [Label(name="neutral", score=0.45), Label(name="disturbing", score=0.55)],
          "meme": [Label(name="meme", score=0.9), Label(name="photo", score=0.1)],
          "action": [Label(name="playing guitar", score=0.31), Label(name="singing", score=0.2)]}
    assert head_flags(s, zs) == ["meme", "playing guitar"]
    s.clip.disturbing_threshold, s.clip.action_threshold = 0.55, 0.5
    assert head_flags(s, zs) == ["disturbing", "meme"]


def test_payload_and_search_fields() -> None:
    """to_payloads on constructed outputs: 512-d, three heads, the numeric fields the search index keeps."""
    s = Settings()
    handler = Clip(s)
    rng = np.random.default_rng(0)
    emb = _normalise(rng.normal(size=(2, 512))).astype(np.float32)
    outputs: dict[str, Any] = {"EMBEDDING": emb}
    for h in handler.heads:
        outputs[f"zero_shot:{h.name}"] = zero_shot_probs(emb, _normalise(rng.normal(size=(len(h.classes), 512))))
    payloads = handler.to_payloads(outputs, 2)
    p = payloads[0]
    assert p.kind == "clip_embedding" and p.embedding_dim == 512 and set(p.zero_shot) == set(HEADS)
    assert len(p.zero_shot["action"]) == s.clip.action_top_k
    fields = p.search_fields()
    assert set(fields.numeric) == {"disturbing", "meme"} and fields.embedding is not None


# ---- through Triton and the pipeline (wiring with RANDOM weights) ---------------------------------------


@pytest.fixture(scope="module")
def clip_stack(stack_settings: Settings, random_ckpt: Path) -> Settings:
    """The session stack's settings (a copy) with the random checkpoint, clip + clip_text pulled and loaded."""
    from tests.support.stack import load_models

    s = with_weights(stack_settings, random_ckpt)
    load_models(s, ["clip", "clip_text"])
    return s


@pytest.mark.integration
def test_verify_through_triton_is_honest_about_random_weights(clip_stack: Settings, random_ckpt: Path) -> None:
    report = store.verify(clip_stack, names=["clip", "clip_text"])
    assert report.ok, str(report)
    text = str(report)
    assert "embedding [2, 512]" in text and "embedding [3, 512]" in text
    assert "weights look RANDOM, retrieval quality NOT checked" in text
    assert "ranks the cat photo first" not in text  # never claimed without being measured
    sha = store.sha256_file(random_ckpt)[:8]
    for name in ("clip", "clip_text"):
        assert registry.get_model(clip_stack, name).model_version == f"openclip-vit-b-32-{sha}"
    assert store.pull(clip_stack, "clip").action == "up-to-date"  # second pull: no-op


@pytest.fixture(scope="module")
def clip_run(clip_stack: Settings, sample_files: list[Path]) -> Iterator[tuple[Settings, dict[str, str]]]:
    from tests.support.modelrun import model_run
    from tests.support.videofactory import make_video

    files = {p.stem: p.read_bytes() for p in sample_files}
    shots = [(np.asarray(data.chelsea()), 2.0), (np.asarray(data.astronaut()), 2.0), (np.asarray(data.coffee()), 2.0)]
    media = {"chelsea": (files["chelsea"], "chelsea.jpg"), "astronaut": (files["astronaut"], "astronaut.jpg"),
             "video": (make_video(shots, "mp4"), "clip.mp4")}
    with model_run(clip_stack, "t_model_clip", ["clip"], media) as run:
        yield run


def _annotations(s: Settings, asset_id: str) -> list[dict[str, Any]]:
    from tests.support.modelrun import annotations

    return annotations(s, asset_id, "clip")


def _check_payload(payload: dict[str, Any]) -> None:
    assert payload["kind"] == "clip_embedding" and payload["embedding_dim"] == 512
    assert abs(float(np.linalg.norm(payload["embedding"])) - 1.0) < 1e-4
    assert set(payload["zero_shot"]) == set(HEADS)
    for head in ("disturbing", "meme"):
        pair = payload["zero_shot"][head]
        assert len(pair) == 2 and head in {lb["name"] for lb in pair}
        assert abs(sum(lb["score"] for lb in pair) - 1.0) < 1e-4
    assert len(payload["zero_shot"]["action"]) == 5


@pytest.mark.integration
def test_processor_writes_clip_annotations(clip_run: tuple[Settings, dict[str, str]]) -> None:
    s, ids = clip_run
    version = registry.get_model(s, "clip").model_version
    for key in ("chelsea", "astronaut"):
        (row,) = _annotations(s, ids[key])
        assert row["keyframe_ms"] is None and row["model_version"] == version
        _check_payload(row["payload"])
    summary, *frames = _annotations(s, ids["video"])
    assert summary["keyframe_ms"] is None and summary["payload"]["kind"] == "video_summary"
    assert [r["keyframe_ms"] for r in frames] == summary["payload"]["keyframes_ms"] == [0, 2000, 4000]
    for r in frames:
        _check_payload(r["payload"])
    assert len(summary["payload"]["embedding"]) == 512

    # the processor cached the prompts' class vectors: a new handler needs no clip_text pass
    class NoTriton:
        def infer(self, *args: Any) -> Any:
            raise AssertionError("class vectors should come from the cache")

    handler = Clip(s)
    assert handler._prompt_cache().exists()
    vecs = handler.class_vectors(NoTriton())  # type: ignore[arg-type]
    assert {k: v.shape for k, v in vecs.items()} == {"disturbing": (2, 512), "meme": (2, 512), "action": (400, 512)}


@pytest.mark.integration
def test_search_clip_endpoint_answers(clip_run: tuple[Settings, dict[str, str]]) -> None:
    """Wiring only: /search/clip embeds the text with clip_text and runs kNN over the clip vectors (with random
    weights the ORDER means nothing, so only the answer's shape is checked)."""
    from fastapi.testclient import TestClient

    from api.app import create_app

    s, ids = clip_run
    client = TestClient(create_app(s))
    r = client.get("/v1/search/clip", params={"text": "a photo of a cat", "k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "clip" and body["hits"]
    assert {h["asset_id"] for h in body["hits"]} <= set(ids.values())

    unconfigured = with_weights(s, None)
    r = TestClient(create_app(unconfigured)).get("/v1/search/clip", params={"text": "a cat"})
    assert r.status_code == 501 and "ARGUS_CLIP__WEIGHTS" in r.json()["detail"]
