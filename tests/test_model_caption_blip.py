"""Captioning (``caption_blip``): an OPTIONAL model whose BLIP weights the operator configures.

What these tests can and cannot show: no BLIP checkpoint can be downloaded here (no hub access, and no
registry package ships one), so the tests build a TINY BLIP with RANDOM weights: a small ``BlipConfig``
(2 layers, hidden size 32, 32x32 patches) and a tiny BERT WordPiece tokenizer made offline from a
``vocab.txt`` the test writes (BLIP's special tokens + a few unrelated English words), saved with
``save_pretrained`` into a temp folder exactly like a real checkpoint. The tests check serving, shapes and
wiring only: availability without weights, the artifact, the in-process ``Core``, Triton, the processor
end to end (images and a video) into PostgreSQL, and full-text search over the caption. The captions are
gibberish (random weights) and are NEVER judged for content; with a real checkpoint ``argus models verify``
reports whether the cat photo's caption mentions a cat.
"""

from __future__ import annotations

import hashlib
import importlib.util
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from PIL import Image
from skimage import data

from core.settings import Settings
from models import caption_blip as caption
from models import registry, store

REPO = Path(__file__).resolve().parent.parent
MODEL_PY = REPO / "triton_repo" / "caption_blip" / "1" / "model.py"
MODEL = "caption_blip"
# no "cat" (or any word a cat photo might suggest): a random model must not look like it recognised something
WORDS = ["lantern", "harbor", "meadow", "violin", "glacier", "orchard", "canyon", "trumpet", "lighthouse", "pebble",
         "tundra", "compass", "saddle", "quarry", "bramble"]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"]  # BLIP: [DEC] starts a caption, [SEP] ends it


def model_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("caption_blip_model", MODEL_PY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_tiny_blip(folder: Path) -> Path:
    """A random-weight BLIP captioner + tokenizer + image processor, saved like a real checkpoint."""
    pytest.importorskip("transformers")
    import torch

    with model_module().torchvision_hidden():  # PyPI torchvision does not load beside CPU torch
        import transformers
        from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipProcessor

        image_processor_cls = getattr(transformers, "BlipImageProcessorPil", None) or transformers.BlipImageProcessor
        folder.mkdir(parents=True, exist_ok=True)
        vocab = SPECIALS + WORDS
        (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
        tokenizer = BertTokenizer(vocab=str(folder / "vocab.txt"), bos_token="[DEC]")
        ids = {t: vocab.index(t) for t in SPECIALS}
        config = BlipConfig(
            text_config={"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 64,
                         "num_hidden_layers": 2, "num_attention_heads": 2, "max_position_embeddings": 64,
                         "bos_token_id": ids["[DEC]"], "sep_token_id": ids["[SEP]"], "eos_token_id": ids["[SEP]"],
                         "pad_token_id": ids["[PAD]"]},
            vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                           "num_attention_heads": 2, "image_size": 384, "patch_size": 32, "initializer_range": 0.02},
            projection_dim=32, image_text_hidden_size=32,
        )
        torch.manual_seed(0)  # the same gibberish every run
        BlipForConditionalGeneration(config).save_pretrained(folder)
        image_processor = image_processor_cls(size={"height": caption.SIZE, "width": caption.SIZE})
        BlipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_blip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_blip(tmp_path_factory.mktemp("tiny-blip") / "blip")


def with_weights(base: Settings, folder: Path | None) -> Settings:
    s = base.model_copy(deep=True)
    s.caption.weights = folder
    return s


def photo(name: str) -> np.ndarray:
    return caption.to_model_input(Image.fromarray(getattr(data, name)()))


# ---- unit ------------------------------------------------------------------------------------------


def test_unavailable_without_weights(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from argus.workers import default_workers

    monkeypatch.delenv("ARGUS_CAPTION__WEIGHTS", raising=False)
    s = Settings()
    s.models = [*registry.enabled_models(s), MODEL]
    assert s.caption.weights is None and MODEL in registry.model_classes(Settings())
    (row,) = [r for r in store.list_models(s) if r.name == MODEL]
    assert not row.available and "ARGUS_CAPTION__WEIGHTS" in row.reason and "hf download" in row.reason
    assert row.source.startswith("file:") and row.task == "captioning"
    with pytest.raises(store.ModelUnavailable, match="no BLIP weights configured"):
        store.pull(s, MODEL)
    assert MODEL in registry.unavailable_models(s, registry.enabled_models(s))
    assert MODEL not in registry.triton_models(s)
    assert not any(w.name.startswith(f"processor-{MODEL}") for w in default_workers(s))
    # a folder that is not a checkpoint says what is missing
    (tmp_path / "config.json").write_text("{}")
    why = caption.CaptionBlip(with_weights(s, tmp_path)).unavailable()
    assert why is not None and "missing model.safetensors or pytorch_model.bin" in why and "tokenizer.json" in why
    assert "not a folder" in (caption.CaptionBlip(with_weights(s, tmp_path / "nope")).unavailable() or "")


def test_artifact_is_flat_deterministic_and_leaves_junk_out(tmp_path: Path) -> None:
    src = tmp_path / "ckpt"
    (src / ".cache" / "huggingface").mkdir(parents=True)
    for name, body in {"config.json": b"{}", "model.safetensors": b"W" * 1000, "pytorch_model.bin": b"old",
                       "tf_model.h5": b"tf", "README.md": b"# card", "tokenizer.json": b"{}", "vocab.txt": b"a\n",
                       "preprocessor_config.json": b"{}", ".gitattributes": b"*"}.items():
        (src / name).write_bytes(body)
    a, b = tmp_path / "a.zip", tmp_path / "b.zip"
    caption.pack(src, a)
    (src / "config.json").touch()  # a newer mtime must not change the bytes
    caption.pack(src, b)
    assert a.read_bytes() == b.read_bytes()
    with zipfile.ZipFile(a) as zf:
        assert zf.namelist() == ["config.json", "model.safetensors", "preprocessor_config.json", "tokenizer.json",
                                 "vocab.txt"]  # one weights file (safetensors preferred), no hidden/README/TF
        assert all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())
    assert caption.CaptionBlip(with_weights(Settings(), src)).weights().name == "model.safetensors"


def test_core_in_process_one_caption_per_image(tiny_blip: Path, tmp_path: Path) -> None:
    caption.pack(tiny_blip, tmp_path / caption.ARTIFACT)
    core = model_module().Core(str(tmp_path), {"intra_op_threads": "1", "max_new_tokens": "8", "num_beams": "2"})
    images = np.stack([photo("chelsea"), photo("astronaut"), photo("coffee")])
    assert images.shape == (3, 384, 384, 3) and images.dtype == np.uint8
    out = core.infer({"IMAGE": images})  # parameters' defaults (beam search)
    assert out["CAPTION"].shape == (3, 1) and out["CAPTION"].dtype == object
    assert out["SCORE"].shape == (3, 1) and out["SCORE"].dtype == np.float32
    for text in out["CAPTION"][:, 0]:
        words = text.decode().split()
        assert 1 <= len(words) <= 8 and set(words) <= set(WORDS)  # decoded, special tokens stripped
    assert np.all((out["SCORE"] > 0) & (out["SCORE"] <= 1))
    # per-row generation parameters (greedy for two rows, 3 tokens for one): rows grouped, order kept
    mixed = core.infer({"IMAGE": images, "NUM_BEAMS": np.array([[1], [3], [1]], np.int32),
                        "MAX_NEW_TOKENS": np.array([[3], [8], [8]], np.int32)})
    assert mixed["CAPTION"].shape == (3, 1)
    assert len(mixed["CAPTION"][0, 0].decode().split()) <= 3 < len(mixed["CAPTION"][2, 0].decode().split())
    assert np.all((mixed["SCORE"] > 0) & (mixed["SCORE"] <= 1))


def test_handler_inputs_and_payloads(tiny_blip: Path) -> None:
    from models.caption_blip import CaptionBlip
    from models.probes import encode_png
    from schemas.events import Caption, MediaUploaded

    assert registry.model_classes(Settings())[MODEL] is CaptionBlip
    s = with_weights(Settings(), tiny_blip)
    s.caption.max_new_tokens, s.caption.num_beams = 12, 1
    ev = MediaUploaded.model_validate({
        "event_id": "e1", "asset_id": "a1", "bucket": "b", "object_key": "k", "media_type": "image",
        "content_type": "image/png", "size_bytes": 1, "filename": "x.png"})
    (item,) = CaptionBlip(s).prepare(ev, encode_png(Image.fromarray(data.chelsea())))
    assert item.row["IMAGE"].shape == (384, 384, 3) and item.keyframe_ms is None
    assert item.row["MAX_NEW_TOKENS"].tolist() == [12] and item.row["NUM_BEAMS"].tolist() == [1]
    out = {"CAPTION": np.array([[b" a lantern "], ["\u00e9t\u00e9".encode()]], dtype=object),
           "SCORE": np.array([[0.5], [1.2]], np.float32)}
    assert CaptionBlip(s).to_payloads(out, 2) == [Caption(text="a lantern", score=0.5),
                                                  Caption(text="\u00e9t\u00e9", score=1.0)]
    # the caption joins full-text search and the asset's MiniLM text (text_embed) without caption-specific code
    from processors.text_embedder import source_text
    assert Caption(text="a dog on a beach").search_fields().text == "a dog on a beach"
    assert source_text(Caption(text="a dog  on a beach")) == "a dog on a beach"


# ---- through Triton and the pipeline ------------------------------------------------------------


@pytest.fixture(scope="module")
def caption_loaded(stack_settings: Settings, tiny_blip: Path) -> Iterator[Settings]:
    """caption_blip pulled from the tiny checkpoint and loaded into the session's Triton; unloaded after.
    The session settings are not touched: a copy carries ``caption.weights``."""
    import tritonclient.http as httpclient

    from tests.support.stack import load_models

    s = with_weights(stack_settings, tiny_blip)
    load_models(s, [MODEL])
    try:
        yield s
    finally:
        client = httpclient.InferenceServerClient(url=s.triton_url)
        try:
            client.unload_model(MODEL)
            # unloading is asynchronous (the python stub takes seconds to stop) and Triton is not ready meanwhile:
            # wait, so that the next module's `models verify` sees a ready server
            deadline = time.monotonic() + 60
            while not client.is_server_ready() and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            client.close()


@pytest.mark.integration
def test_pull_and_verify_through_triton(caption_loaded: Settings, tiny_blip: Path) -> None:
    s = caption_loaded
    sha = hashlib.sha256((tiny_blip / "model.safetensors").read_bytes()).hexdigest()
    assert registry.get_model(s, MODEL).model_version == f"blip-{sha[:8]}"  # the version follows the configured weights
    assert store.pull(s, MODEL).action == "up-to-date"  # a second pull is a no-op
    (row,) = [r for r in store.list_models(s) if r.name == MODEL]
    assert row.available and row.version == f"blip-{sha[:8]}"
    report = store.verify(s, names=[MODEL])
    assert report.ok, str(report)
    assert "cat photo: '" in str(report) and "mentions a cat: no" in str(report)  # gibberish, by construction


@pytest.fixture(scope="module")
def caption_run(caption_loaded: Settings, sample_files: list[Path]) -> Iterator[tuple[Settings, dict[str, str]]]:
    """The caption processor + sinks on an isolated database: two photos and a 3-shot video in."""
    from tests.support.modelrun import model_run
    from tests.support.videofactory import make_video

    files = {p.stem: p.read_bytes() for p in sample_files}
    shots = [(np.asarray(getattr(data, n)()), 2.0) for n in ("chelsea", "astronaut", "coffee")]
    media = {"chelsea": (files["chelsea"], "chelsea.jpg"), "astronaut": (files["astronaut"], "astronaut.jpg"),
             "mp4": (make_video(shots, "mp4"), "clip.mp4")}
    with model_run(caption_loaded, "t_model_caption", [MODEL], media) as run:
        yield run


def _annotations(s: Settings, asset_id: str) -> list[dict[str, Any]]:
    from tests.support.modelrun import annotations

    return annotations(s, asset_id, MODEL)


@pytest.mark.integration
def test_processor_captions_images_and_video_into_postgres_and_search(
        caption_run: tuple[Settings, dict[str, str]]) -> None:
    from core import db
    from retrieval.search import get_search_index
    from retrieval.search.interface import SearchQuery

    s, ids = caption_run
    version = registry.get_model(s, MODEL).model_version
    for key in ("chelsea", "astronaut"):
        (row,) = _annotations(s, ids[key])
        p = row["payload"]
        assert row["model_version"] == version and p["kind"] == "caption" and p["text"].strip()
        assert set(p["text"].split()) <= set(WORDS) and 0 < p["score"] <= 1
    summary, *frames = _annotations(s, ids["mp4"])
    assert [r["keyframe_ms"] for r in frames] == [0, 2000, 4000]  # first frame + the two cuts (<= 4 keyframes)
    assert all(r["payload"]["kind"] == "caption" and r["payload"]["text"] for r in frames)
    assert summary["keyframe_ms"] is None and summary["payload"]["kind"] == "video_summary"
    assert summary["payload"]["keyframes_ms"] == [0, 2000, 4000]
    segments = {t["name"] for t in summary["payload"]["text_segments"]}
    assert segments == {r["payload"]["text"] for r in frames}  # each distinct caption, with its time ranges
    with db.connect(s) as conn:
        assert db.scalar(conn, "SELECT count(*) FROM dead_letters") == 0
    # full-text search finds the photo by a word of its generated caption
    text = _annotations(s, ids["chelsea"])[0]["payload"]["text"]
    word = max(text.split(), key=len)
    hits = {h.asset_id for h in get_search_index(s).search(SearchQuery(text=word, limit=50)).hits}
    assert ids["chelsea"] in hits, (word, hits)
    video_word = max(frames[0]["payload"]["text"].split(), key=len)
    hits = {h.asset_id for h in get_search_index(s).search(SearchQuery(text=video_word, limit=50)).hits}
    assert ids["mp4"] in hits, (video_word, hits)
