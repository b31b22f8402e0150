"""Semantic text search: a query sentence -> MiniLM embedding (through Triton) -> kNN over the assets'
text embeddings (annotation text: labels, faces, OCR, title, description; see processors/text_embedder.py).

``embed_texts``/``embed_text`` are the query-time helpers (the same tokenizer and model as indexing, so
query and document vectors share one space); ``semantic_search(settings, text, k)`` is what an API
endpoint calls.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np

from core.settings import Settings
from core.triton import TritonClient

__all__ = ["TEXT_MODEL", "embed_text", "embed_texts", "semantic_search", "tokenizer"]

TEXT_MODEL = "text_embed"


@cache
def tokenizer(path: Path):  # type: ignore[no-untyped-def]  # -> minilm.Tokenizer (cached per file)
    from models.minilm import Tokenizer

    return Tokenizer(path)


def embed_texts(settings: Settings, texts: list[str], client: TritonClient | None = None,
                model: str = TEXT_MODEL) -> np.ndarray:
    """float32 [N,384], L2-normalised. Retries while Triton is unreachable (see TritonClient)."""
    if not texts:
        return np.zeros((0, 384), np.float32)
    ids, mask = tokenizer(settings.triton_repo / model / "tokenizer.json")(texts)
    own = client is None
    triton = client or TritonClient(settings)
    try:
        return triton.infer(model, {"INPUT_IDS": ids, "ATTENTION_MASK": mask}, ["EMBEDDING"])["EMBEDDING"]
    finally:
        if own:
            triton.close()


def embed_text(settings: Settings, text: str) -> list[float]:
    return [float(x) for x in embed_texts(settings, [text])[0]]


def semantic_search(settings: Settings, text: str, k: int = 10):  # type: ignore[no-untyped-def]
    """The ``k`` assets whose annotation text is closest in meaning to ``text`` (cosine, best first),
    as search ``Hit``s. Raises LookupError-style errors of the index when no text vectors exist yet."""
    from sinks.search import get_search_index

    model = getattr(getattr(settings, "search", None), "text_embed_model", TEXT_MODEL) or TEXT_MODEL
    return get_search_index(settings).knn(model, embed_text(settings, text), k)
