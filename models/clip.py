"""CLIP (open_clip ViT-B-32 on Triton): 512-d image embedding for cross-modal search + zero-shot heads.

Per image / video keyframe: the ``clip`` model's L2-normalised embedding, and from it the zero-shot heads
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

The model is only started where weights are configured (``models.clip_zoo.unavailable``); its
``embed_text`` serves ``/search/clip`` (text -> image kNN over the ``clip`` vectors).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from core.settings import Settings
from core.triton import TritonClient
from models.clip_zoo import LOGIT_SCALE, read_meta, to_clip_input, tokenizer_for
from models.frames import IMAGE_AND_VIDEO, media_frames
from processors.runtime import Item, ModelHandler
from schemas.events import AnnotationPayload, ClipEmbedding, Label, MediaUploaded

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


# ---- the handler -----------------------------------------------------------------------------------


class Clip(ModelHandler):
    model = "clip"
    text_model = "clip_text"
    media_types = IMAGE_AND_VIDEO
    outputs = ["EMBEDDING"]
    max_batch = 32

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._lock = threading.Lock()
        self._class_vecs: dict[str, np.ndarray] | None = None

    @cached_property
    def heads(self) -> list[Head]:
        return load_heads(self.settings.triton_repo / self.model / "zero_shot.json")

    @cached_property
    def tokenizer(self) -> Any:
        # the arch clip_text was BUILT from (its meta), so queries tokenise like the served tower
        arch = read_meta(self.settings.triton_repo / self.text_model).get("arch") or self.settings.clip.arch
        return tokenizer_for(str(arch))

    def prepare(self, event: MediaUploaded, data: bytes) -> list[Item]:
        frames = media_frames(self.settings, event, data)
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
        from models.registry import get_spec

        version = get_spec(self.text_model).version_for(self.settings)
        prompts = hashlib.sha256((self.settings.triton_repo / self.model / "zero_shot.json").read_bytes())
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
        out = triton.infer(self.model, inputs, self.outputs)
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
