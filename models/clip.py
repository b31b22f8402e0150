"""CLIP (open_clip, ViT-B-32 by default): the image tower (``clip``) and the text tower (``clip_text``) on Triton.

No package registry ships CLIP weights, so the operator configures them (``ClipSettings``):

* ``ARGUS_CLIP__WEIGHTS=/path/to/checkpoint`` (.bin/.pt/.safetensors, an open_clip state dict for
  ``ARGUS_CLIP__ARCH``), or
* ``ARGUS_CLIP__PRETRAINED=<open_clip tag>`` (e.g. ``laion2b_s34b_b79k``): downloaded by open_clip into
  ``settings.cache_dir / "open_clip"`` at pull time, so only where the hub is reachable.

Without either, both models are *unavailable*: not pulled, not loaded in Triton, their processor not
started, ``models list`` says why. Nothing is ever served with random weights by accident; the tests
build a random checkpoint on purpose and check wiring only.

``argus models pull clip clip_text`` loads the checkpoint with open_clip (strict, ``require_pretrained``)
and exports one ONNX graph per tower (opset 17, dynamic batch):

* ``clip``: IMAGE uint8 [N,224,224,3] (resized + centre-cropped client side exactly like open_clip's
  preprocess: ``to_clip_input``) -> EMBEDDING fp32 [N,512], L2-normalised; mean/std normalisation is
  inside the graph.
* ``clip_text``: TOKENS int64 [N,77] (``tokenize``) -> EMBEDDING fp32 [N,512], L2-normalised.

The model version is ``openclip-vit-b-32-<sha256(checkpoint)[:8]>`` (new weights -> new version -> reindex).
Next to each artifact, ``1/clip_meta.json`` records the arch, the checkpoint's logit scale and the
tokenizer, so the check and the clients read what was actually built.

The processor, per image / video keyframe: the ``clip`` model's L2-normalised embedding, and from it the zero-shot heads
of ``triton_repo/clip/zero_shot.json``:

* each head class's prompts are embedded ONCE through Triton's ``clip_text`` (the Kinetics head alone is
  400 prompts), averaged and re-normalised (prompt ensembling); the class vectors are cached in memory and
  in ``cache_dir/clip/`` keyed by the text tower's version and the prompt file's hash;
* an image's probabilities are a softmax over the head's classes of ``LOGIT_SCALE`` (100, CLIP's trained
  logit scale) times the cosine similarity;
* binary heads (``disturbing``, ``meme``) report two labels, the one named like the head (P(head), the
  search index's numeric field) and its complement (1 - P), best first; ``action`` reports the top-k of
  Kinetics-400's classes;
* flags: ``disturbing`` / ``meme`` when P >= their threshold (``ClipSettings``), and the top action's name
  when its probability >= ``action_threshold`` (a 400-way softmax rarely gets there unless one action
  clearly dominates, so only confident actions become search labels).

The model is only started where weights are configured (``unavailable``); its
``embed_text`` serves ``/search/clip`` (text -> image kNN over the ``clip`` vectors).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import html
import importlib.util
import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from core.packages import find_package_dir
from core.settings import Settings
from core.triton import TritonClient
from models.base import IMAGE_AND_VIDEO, CheckResult, Item, Model, ModelUnavailable
from models.frames import media_frames
from models.openclip_compat import import_open_clip
from models.probes import photo, triton_infer
from schemas.events import AnnotationPayload, ClipEmbedding, Label, MediaUploaded

__all__ = [
    "CONTEXT_LENGTH",
    "LOGIT_SCALE",
    "BpeTokenizer",
    "build_image",
    "build_text",
    "check_image",
    "check_text",
    "load_model",
    "read_meta",
    "to_clip_input",
    "tokenizer_for",
    "unavailable",
    "weights",
]

CONTEXT_LENGTH = 77  # every open_clip text tower
IMAGE_SIZE = 224
LOGIT_SCALE = 100.0  # CLIP's trained logit scale (open_clip clamps at 100): zero-shot softmax temperature
UNTRAINED_LOGIT_SCALE = 1 / 0.07  # open_clip's initial value: a checkpoint still at ~14.3 was never trained
META = "clip_meta.json"
OPSET = 17
HINT = ("set ARGUS_CLIP__WEIGHTS=/path/to/open_clip checkpoint (or ARGUS_CLIP__PRETRAINED=<tag> where the "
        "hub is reachable)")


# ---- availability + weights ----------------------------------------------------------------------


def _open_clip_dir() -> Path | None:
    return find_package_dir("open_clip")  # located, not imported (importing costs ~5 s)


def arch_config(arch: str) -> dict[str, Any] | None:
    """open_clip's model config JSON for ``arch`` (read from the package, without importing it)."""
    root = _open_clip_dir()
    if root is None:
        return None
    path = root / "model_configs" / f"{arch}.json"
    return json.loads(path.read_text()) if path.exists() else None


def hf_tokenizer_name(arch: str) -> str | None:
    """The Hugging Face tokenizer an arch needs (multilingual XLM-R: from the hub), or None (OpenAI BPE)."""
    cfg = arch_config(arch) or {}
    return cfg.get("text_cfg", {}).get("hf_tokenizer_name") or None


def unavailable(settings: Settings) -> str | None:
    """Why CLIP cannot be pulled/served here, or None. Cheap: no import of open_clip or torch."""
    c = settings.clip
    if c.weights is None and not c.pretrained:
        return f"no CLIP weights configured: {HINT}"
    if c.weights is not None and not Path(c.weights).expanduser().is_file():
        return f"ARGUS_CLIP__WEIGHTS={c.weights}: no such file ({HINT})"
    if _open_clip_dir() is None:
        return "open_clip_torch is not installed (pip install --no-deps open_clip_torch==3.3.0 ftfy wcwidth regex)"
    if arch_config(c.arch) is None:
        return f"ARGUS_CLIP__ARCH={c.arch}: not an open_clip model config"
    if hf_tokenizer_name(c.arch) and importlib.util.find_spec("transformers") is None:
        return (f"ARGUS_CLIP__ARCH={c.arch} needs the transformers package and the Hugging Face hub "
                f"(tokenizer {hf_tokenizer_name(c.arch)!r}); not installed here")
    return None


def weights(settings: Settings) -> Path:
    """The checkpoint file: the configured one, or the pretrained tag's download (cached in cache_dir)."""
    c = settings.clip
    if c.weights is not None:
        return Path(c.weights).expanduser().resolve()
    oc = _import_open_clip()
    cfg = oc.pretrained.get_pretrained_cfg(c.arch, c.pretrained)
    if not cfg:
        known = ", ".join(oc.pretrained.list_pretrained_tags_by_model(c.arch)) or "none"
        raise ModelUnavailable(f"clip: open_clip has no pretrained tag {c.pretrained!r} for {c.arch} (known: {known})")
    cache = settings.cache_dir / "open_clip"
    try:
        path = oc.pretrained.download_pretrained(cfg, cache_dir=str(cache))
    except Exception as exc:  # noqa: BLE001 - offline: urllib/huggingface_hub errors of every kind
        raise ModelUnavailable(
            f"clip: could not download open_clip weights {c.arch}/{c.pretrained} into {cache} "
            f"({type(exc).__name__}: {exc}); without internet, copy the checkpoint here and "
            f"set ARGUS_CLIP__WEIGHTS=/path/to/it") from exc
    if not path or not Path(path).is_file():
        raise ModelUnavailable(f"clip: open_clip returned no file for {c.arch}/{c.pretrained}")
    return Path(path)


def _import_open_clip() -> Any:
    return import_open_clip()


def load_model(settings: Settings, path: Path | None = None) -> Any:
    """The open_clip model with the configured weights, strictly loaded (eval mode)."""
    oc = _import_open_clip()
    ckpt = path or weights(settings)
    model = oc.create_model(settings.clip.arch, pretrained=str(ckpt), require_pretrained=True,
                            cache_dir=str(settings.cache_dir / "open_clip"))
    return model.eval()


# ---- ONNX export ---------------------------------------------------------------------------------


def _image_module(model: Any) -> Any:
    import torch

    mean = getattr(model.visual, "image_mean", None) or (0.48145466, 0.4578275, 0.40821073)
    std = getattr(model.visual, "image_std", None) or (0.26862954, 0.26130258, 0.27577711)

    class ImageTower(torch.nn.Module):
        """uint8 NHWC RGB -> normalised NCHW float -> encode_image -> L2-normalised embedding."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.mean: torch.Tensor
            self.std: torch.Tensor
            self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1) * 255.0)
            self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1) * 255.0)

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            x = (image.permute(0, 3, 1, 2).float() - self.mean) / self.std
            return self.model.encode_image(x, normalize=True)

    return ImageTower().eval()


def _text_module(model: Any) -> Any:
    import torch

    class TextTower(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            return self.model.encode_text(tokens, normalize=True)

    return TextTower().eval()


def _export(module: Any, example: Any, dst: Path, input_name: str) -> None:
    import torch

    # nn.MultiheadAttention's inference fast path (aten::_native_multi_head_attention) has no ONNX symbolic
    previous = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad():
            torch.onnx.export(
                module, (example,), str(dst), input_names=[input_name], output_names=["EMBEDDING"],
                dynamic_axes={input_name: {0: "n"}, "EMBEDDING": {0: "n"}}, opset_version=OPSET, dynamo=False,
            )
    finally:
        torch.backends.mha.set_fastpath_enabled(previous)


def _write_meta(dir_: Path, settings: Settings, model: Any) -> None:
    meta = {
        "arch": settings.clip.arch,
        "embed_dim": int(model.text_projection.shape[1]) if hasattr(model, "text_projection")
        and model.text_projection is not None and model.text_projection.ndim == 2 else None,
        "logit_scale": round(float(model.logit_scale.detach().exp()), 4),
        "context_length": CONTEXT_LENGTH,
        "tokenizer": hf_tokenizer_name(settings.clip.arch) or "openai-bpe",
    }
    tmp = dir_ / f".{META}.tmp"
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    os.replace(tmp, dir_ / META)


def build_image(dst: Path, settings: Settings) -> None:
    """``clip``: the image tower as ONNX (IMAGE uint8 [N,224,224,3] -> EMBEDDING [N,D])."""
    import torch

    model = load_model(settings)
    _export(_image_module(model), torch.zeros((2, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=torch.uint8), dst, "IMAGE")
    _write_meta(dst.parent, settings, model)


def build_text(dst: Path, settings: Settings) -> None:
    """``clip_text``: the text tower as ONNX (TOKENS int64 [N,77] -> EMBEDDING [N,D])."""
    import torch

    model = load_model(settings)
    _export(_text_module(model), torch.zeros((2, CONTEXT_LENGTH), dtype=torch.int64), dst, "TOKENS")
    _write_meta(dst.parent, settings, model)


def read_meta(model_dir: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((model_dir / "1" / META).read_text()))
    except (OSError, ValueError):
        return {}


# ---- client side: preprocessing + tokenizer ------------------------------------------------------


def to_clip_input(img: Image.Image, size: int = IMAGE_SIZE) -> np.ndarray:
    """RGB image -> uint8 [size,size,3] exactly as open_clip's preprocess before its float normalisation:
    bicubic resize of the shorter side to ``size`` (long side truncated like torchvision), centre crop."""
    if img.mode != "RGB":
        img = img.convert("RGB")
    w, h = img.size
    if w <= h:
        new_w, new_h = size, int(size * h / w)
    else:
        new_w, new_h = int(size * w / h), size
    img = img.resize((new_w, new_h), Image.Resampling.BICUBIC)
    top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
    img = img.crop((left, top, left + size, top + size))
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))


@lru_cache(maxsize=1)
def _bytes_to_unicode() -> dict[int, str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


class BpeTokenizer:
    """OpenAI CLIP's byte-level BPE tokenizer (MIT, as in open_clip's ``SimpleTokenizer`` with its default
    ``clean="lower"``), without importing open_clip or torch: texts -> int64 [N, 77] (start token, BPE ids,
    end token, zero padding; truncated with the end token kept). The vocabulary is open_clip's
    ``bpe_simple_vocab_16e6.txt.gz``. tests/test_model_clip.py checks equality with open_clip."""

    def __init__(self, bpe_path: Path, context_length: int = CONTEXT_LENGTH) -> None:
        import regex

        with gzip.open(bpe_path) as fh:
            merges_text = fh.read().decode("utf-8").split("\n")
        merges = [tuple(m.split()) for m in merges_text[1 : 49152 - 256 - 2 + 1]]
        vocab = list(_bytes_to_unicode().values())
        vocab = vocab + [v + "</w>" for v in vocab] + ["".join(m) for m in merges]
        vocab += ["<start_of_text>", "<end_of_text>"]
        self.encoder = {tok: i for i, tok in enumerate(vocab)}
        self.bpe_ranks = {m: i for i, m in enumerate(merges)}
        self.sot, self.eot = self.encoder["<start_of_text>"], self.encoder["<end_of_text>"]
        self.pat = regex.compile(r"<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|"
                                 r"[^\s\p{L}\p{N}]+", regex.IGNORECASE)
        self.context_length = context_length
        self.cache: dict[str, str] = {"<start_of_text>": "<start_of_text>", "<end_of_text>": "<end_of_text>"}
        self.lock = threading.Lock()

    def _bpe(self, token: str) -> str:
        if token in self.cache:
            return self.cache[token]
        word: tuple[str, ...] = (*token[:-1], token[-1] + "</w>")
        while len(word) > 1:
            pairs = set(zip(word, word[1:], strict=False))
            bigram = min(pairs, key=lambda p: self.bpe_ranks.get(p, float("inf")))
            if bigram not in self.bpe_ranks:
                break
            first, second = bigram
            merged: list[str] = []
            i = 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = tuple(merged)
        out = " ".join(word)
        with self.lock:
            self.cache[token] = out
        return out

    def encode(self, text: str) -> list[int]:
        import ftfy

        text = " ".join(html.unescape(html.unescape(ftfy.fix_text(text))).strip().split()).lower()
        byte_map = _bytes_to_unicode()
        ids: list[int] = []
        for token in self.pat.findall(text):
            token = "".join(byte_map[b] for b in token.encode("utf-8"))
            ids.extend(self.encoder[t] for t in self._bpe(token).split(" "))
        return ids

    def __call__(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.context_length), dtype=np.int64)
        for i, text in enumerate(texts):
            ids = [self.sot, *self.encode(text), self.eot]
            if len(ids) > self.context_length:
                ids = ids[: self.context_length]
                ids[-1] = self.eot
            out[i, : len(ids)] = ids
        return out


class _HfTokenizer:
    """The multilingual archs' Hugging Face tokenizer, through open_clip (needs transformers + the hub)."""

    def __init__(self, arch: str) -> None:
        self.tok = _import_open_clip().get_tokenizer(arch)

    def __call__(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.tok(texts).numpy(), dtype=np.int64)


@lru_cache(maxsize=4)
def _tokenizer(arch: str) -> Any:
    if hf_tokenizer_name(arch):
        return _HfTokenizer(arch)
    root = _open_clip_dir()
    if root is None:
        raise RuntimeError("open_clip_torch is not installed: its BPE vocabulary is needed to tokenise CLIP text")
    return BpeTokenizer(root / "bpe_simple_vocab_16e6.txt.gz")


def tokenizer_for(arch: str) -> Any:
    """texts -> TOKENS int64 [N,77] for ``arch`` (one instance per process)."""
    return _tokenizer(arch)


# ---- checks through Triton -----------------------------------------------------------------------


def _infer(client: Any, model: str, name: str, arr: np.ndarray) -> np.ndarray:
    return triton_infer(client, model, {name: arr}, ["EMBEDDING"])["EMBEDDING"]


def _photos() -> np.ndarray:
    return np.stack([to_clip_input(photo("chelsea")), to_clip_input(photo("astronaut"))])


def _shape_norm(emb: np.ndarray, n: int) -> tuple[bool, str]:
    norms = np.linalg.norm(emb, axis=1)
    ok = emb.ndim == 2 and emb.shape[0] == n and emb.shape[1] == 512 and bool(np.all(np.abs(norms - 1) < 1e-3))
    return ok, f"embedding {list(emb.shape)}, |e| {norms.min():.4f}..{norms.max():.4f}"


def looks_untrained(meta: dict[str, Any]) -> bool:
    """A checkpoint whose logit scale is still open_clip's initial 1/0.07 was never trained (trained CLIPs
    end near 100). Only then is the retrieval probe skipped: it is never claimed without being measured."""
    scale = meta.get("logit_scale")
    return scale is None or abs(float(scale) - UNTRAINED_LOGIT_SCALE) < 0.5


def check_image(client: Any, model: str, model_dir: Path) -> CheckResult:
    """Shapes + unit norm; with trained weights, "a photo of a cat" must rank the cat photo above the
    astronaut (needs ``clip_text`` loaded). With untrained weights the detail says quality was NOT checked."""
    emb = _infer(client, model, "IMAGE", _photos())
    ok, detail = _shape_norm(emb, 2)
    meta = read_meta(model_dir)
    text_model = "clip_text"
    if not client.is_model_ready(text_model):
        return CheckResult(ok, f"cat + astronaut photos: {detail}; {text_model} not loaded: retrieval probe skipped")
    tokens = tokenizer_for(str(meta.get("arch", "ViT-B-32")))(["a photo of a cat", "a photo of an astronaut"])
    text = _infer(client, text_model, "TOKENS", tokens)
    sims = text @ emb.T  # [prompt, photo]
    probe = f"cos(a photo of a cat: cat, astronaut)=({sims[0, 0]:.3f}, {sims[0, 1]:.3f})"
    if looks_untrained(meta):
        return CheckResult(ok, f"cat + astronaut photos: {detail}; logit scale {meta.get('logit_scale')} = the "
                               f"untrained initial value: weights look RANDOM, retrieval quality NOT checked ({probe})")
    ranked = bool(sims[0, 0] > sims[0, 1] and sims[1, 1] > sims[1, 0])
    verdict = "ranks the cat photo first" if ranked else "FAILS to rank the cat photo first (wrong weights?)"
    return CheckResult(ok and ranked, f"cat + astronaut photos: {detail}; retrieval probe {verdict}: {probe}")


def check_text(client: Any, model: str, model_dir: Path) -> CheckResult:
    """Shapes + unit norm, and a prompt embeds the same alone as in a batch (padding/batching is harmless)."""
    tok = tokenizer_for(str(read_meta(model_dir).get("arch", "ViT-B-32")))
    prompts = ["a photo of a cat", "a photo of an astronaut", "breaking news: a flooded street"]
    emb = _infer(client, model, "TOKENS", tok(prompts))
    ok, detail = _shape_norm(emb, 3)
    alone = _infer(client, model, "TOKENS", tok(prompts[:1]))[0]
    same = float(alone @ emb[0])
    return CheckResult(ok and same > 0.9999, f"3 prompts: {detail}; alone vs batched cos={same:.6f}")


PROMPT_BATCH = 64  # clip_text's max_batch_size


@dataclass(frozen=True)
class Head:
    """One zero-shot head: class names and each class's prompts. Binary: classes[0] is named like the head."""

    name: str
    classes: tuple[str, ...]
    prompts: tuple[tuple[str, ...], ...]

    @property
    def binary(self) -> bool:
        return len(self.classes) == 2 and self.classes[0] == self.name


def load_heads(path: Path) -> list[Head]:
    """``zero_shot.json``: {"heads": {name: {"classes": {class: [prompts]}} | {"template", "labels"}}}."""
    spec = json.loads(path.read_text())["heads"]
    heads = []
    for name, h in spec.items():
        if "classes" in h:
            classes = tuple(h["classes"])
            prompts = tuple(tuple(h["classes"][c]) for c in classes)
        else:
            classes = tuple(h["labels"])
            prompts = tuple((h["template"].format(label=c),) for c in classes)
        heads.append(Head(name, classes, prompts))
    return heads


# ---- the maths (pure; property-tested) -------------------------------------------------------------


def class_vectors(prompt_embs: np.ndarray, counts: Sequence[int]) -> np.ndarray:
    """[P,D] prompt embeddings, grouped by ``counts`` per class -> [C,D]: each class's mean, re-normalised."""
    out, start = [], 0
    for n in counts:
        mean = prompt_embs[start : start + n].astype(np.float64).mean(axis=0)
        out.append(mean / max(float(np.linalg.norm(mean)), 1e-12))
        start += n
    return np.stack(out).astype(np.float32)


def zero_shot_probs(image_embs: np.ndarray, class_vecs: np.ndarray, scale: float = LOGIT_SCALE) -> np.ndarray:
    """[N,D] x [C,D] -> [N,C]: softmax over the classes of ``scale`` * cosine (inputs L2-normalised)."""
    logits = scale * (image_embs.astype(np.float64) @ class_vecs.astype(np.float64).T)
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def head_labels(head: Head, probs: np.ndarray, top_k: int) -> list[Label]:
    """One image's labels for ``head``, best first: both classes of a binary head (P and 1 - P, so they are
    complementary by construction), the top-k of a multi-class head."""
    if head.binary:
        p = float(np.clip(probs[0], 0.0, 1.0))
        pair = [Label(name=head.classes[0], score=round(p, 5), class_id=0),
                Label(name=head.classes[1], score=round(1.0 - p, 5), class_id=1)]
        return sorted(pair, key=lambda lb: -lb.score)
    top = np.argsort(-probs, kind="stable")[:top_k]
    return [Label(name=head.classes[c], score=round(float(np.clip(probs[c], 0.0, 1.0)), 5), class_id=int(c))
            for c in top]


def head_flags(settings: Settings, zero_shot: dict[str, list[Label]]) -> list[str]:
    """Heads over their threshold: "disturbing", "meme", and a confident action's name."""
    c = settings.clip
    thresholds = {"disturbing": c.disturbing_threshold, "meme": c.meme_threshold}
    flags = []
    for head, labels in zero_shot.items():
        if head in thresholds:
            score = next((lb.score for lb in labels if lb.name == head), 0.0)
            if score >= thresholds[head]:
                flags.append(head)
        elif head == "action" and labels and labels[0].score >= c.action_threshold:
            flags.append(labels[0].name)
    return sorted(flags)


# ---- the models -------------------------------------------------------------------------------------


class _OpenClipTower(Model):
    """What both CLIP towers share: the operator's open_clip checkpoint, its availability and version."""

    source_package = "ARGUS_CLIP__WEIGHTS"
    source_version = "open_clip_torch 3.3.0"
    source_registry = "file"
    licence = "MIT (open_clip code); weights: per checkpoint"
    outputs = ["EMBEDDING"]
    version = "openclip-vit-b-32"  # + "-<sha256(checkpoint)[:8]>" (version_from_weights)
    version_from_weights = True

    def unavailable(self) -> str | None:
        return unavailable(self.settings)

    def weights(self) -> Path:
        return weights(self.settings)


class ClipText(_OpenClipTower):
    """The CLIP text tower: served beside ``clip`` (its companion) for the zero-shot prompts and /search/clip;
    no processor of its own."""

    name = "clip_text"
    task = "text-embedding (CLIP text tower)"
    consumes = "nothing"
    media_types = frozenset()
    build_params = {"opset": 17, "exporter": "torch.onnx.export(dynamo=False)", "input": "TOKENS int64 [N,77]",
                    "revision": 1}

    def build(self, dst: Path) -> None:
        build_text(dst, self.settings)

    def check(self, client: Any) -> CheckResult:
        return check_text(client, self.name, self.model_dir)


class Clip(_OpenClipTower):
    name = "clip"
    cpu_cost_ms = 65  # docs/models.md throughput
    input_side = IMAGE_SIZE
    task = "image-embedding+zero-shot (CLIP image tower)"
    companions = ("clip_text",)
    text_model = "clip_text"
    media_types = IMAGE_AND_VIDEO
    build_params = {"opset": 17, "exporter": "torch.onnx.export(dynamo=False)",
                    "input": "IMAGE uint8 NHWC 224, mean/std in graph", "revision": 1}
    max_batch = 32

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._lock = threading.Lock()
        self._class_vecs: dict[str, np.ndarray] | None = None

    def build(self, dst: Path) -> None:
        build_image(dst, self.settings)

    def check(self, client: Any) -> CheckResult:
        return check_image(client, self.name, self.model_dir)

    @cached_property
    def heads(self) -> list[Head]:
        return load_heads(self.model_dir / "zero_shot.json")

    @cached_property
    def tokenizer(self) -> Any:
        # the arch clip_text was BUILT from (its meta), so queries tokenise like the served tower
        arch = read_meta(self.settings.triton_repo / self.text_model).get("arch") or self.settings.clip.arch
        return tokenizer_for(str(arch))

    def prepare(self, event: MediaUploaded, data: bytes) -> list[Item]:
        frames = media_frames(self.settings, event, data, target=self.input_side)
        return [Item(event, ms, {"IMAGE": to_clip_input(img)}) for ms, img in frames]

    def embed_texts(self, triton: TritonClient, texts: list[str]) -> np.ndarray:
        """[N,512] L2-normalised CLIP text embeddings through Triton's ``clip_text``."""
        chunks = [texts[i : i + PROMPT_BATCH] for i in range(0, len(texts), PROMPT_BATCH)]
        embs = [triton.infer(self.text_model, {"TOKENS": self.tokenizer(c)}, ["EMBEDDING"])["EMBEDDING"]
                for c in chunks]
        return np.concatenate(embs).astype(np.float32)

    def embed_text(self, triton: TritonClient, text: str) -> list[float]:
        """/search/clip: the query text in the image embedding space."""
        return [float(x) for x in self.embed_texts(triton, [text])[0]]

    def _prompt_cache(self) -> Path:
        """Where the class vectors of these prompts under this text tower are kept between processes: keyed
        by clip_text's version (the checkpoint's sha256) and the prompt file's sha256."""
        version = ClipText(self.settings).model_version
        prompts = hashlib.sha256((self.model_dir / "zero_shot.json").read_bytes())
        return self.settings.cache_dir / "clip" / f"zero-shot-{version}-{prompts.hexdigest()[:12]}.npz"

    def class_vectors(self, triton: TritonClient) -> dict[str, np.ndarray]:
        """{head: [C,512]}: on first use, one pass of every prompt through clip_text (~430 prompts: ~35 s on
        one CPU thread), then kept in memory and in ``cache_dir`` for the next process."""
        with self._lock:
            if self._class_vecs is not None:
                return self._class_vecs
            cache = self._prompt_cache()
            with contextlib.suppress(OSError, ValueError, KeyError):
                with np.load(cache) as npz:
                    cached = {h.name: npz[h.name] for h in self.heads}
                if all(v.shape[0] == len(h.classes) for h, v in zip(self.heads, cached.values(), strict=True)):
                    self._class_vecs = cached
                    return cached
            prompts = [p for h in self.heads for group in h.prompts for p in group]
            embs = self.embed_texts(triton, prompts)
            vecs, start = {}, 0
            for h in self.heads:
                counts = [len(g) for g in h.prompts]
                vecs[h.name] = class_vectors(embs[start : start + sum(counts)], counts)
                start += sum(counts)
            with contextlib.suppress(OSError):  # a read-only cache only costs the recomputation
                cache.parent.mkdir(parents=True, exist_ok=True)
                tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp.npz")
                np.savez(tmp, **vecs)
                os.replace(tmp, cache)
            self._class_vecs = vecs
            return vecs

    def infer(self, triton: TritonClient, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = triton.infer(self.name, inputs, self.outputs)
        emb = out["EMBEDDING"]
        result = {"EMBEDDING": emb}
        for head, vecs in self.class_vectors(triton).items():
            result[f"zero_shot:{head}"] = zero_shot_probs(emb, vecs)
        return result

    def to_payloads(self, outputs: dict[str, np.ndarray], n: int) -> list[AnnotationPayload]:
        emb = outputs["EMBEDDING"]
        result: list[AnnotationPayload] = []
        for i in range(n):
            zero_shot = {h.name: head_labels(h, outputs[f"zero_shot:{h.name}"][i], self.settings.clip.action_top_k)
                         for h in self.heads if f"zero_shot:{h.name}" in outputs}
            vec = [round(float(x), 6) for x in emb[i]]
            result.append(ClipEmbedding(embedding=vec, embedding_dim=len(vec), zero_shot=zero_shot,
                                        flags=head_flags(self.settings, zero_shot)))
        return result
