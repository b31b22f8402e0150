"""Semantic text search: a query sentence -> MiniLM embedding (through Triton) -> kNN over the assets'
text embeddings (annotation text: labels, faces, OCR, title, description; see processors/text_embedder.py).

``embed_text`` is the query-time helper (the same tokenizer and model as indexing, so
query and document vectors share one space); ``semantic_search(settings, text, k)`` is what an API
endpoint calls.
"""

from __future__ import annotations

from core.settings import Settings
from core.triton import TritonClient
from models.text_embed import TextEmbed
from retrieval.search import get_search_index

__all__ = ["TEXT_MODEL", "embed_text", "semantic_search"]

TEXT_MODEL = "text_embed"


def embed_text(settings: Settings, text: str) -> list[float]:
    """A query sentence in the text embedding space (the same model and tokenizer as indexing)."""
    triton = TritonClient(settings)
    try:
        return [float(x) for x in TextEmbed(settings).embed([text], triton)[0]]
    finally:
        triton.close()


def semantic_search(settings: Settings, text: str, k: int = 10):  # type: ignore[no-untyped-def]
    """The ``k`` assets whose annotation text is closest in meaning to ``text`` (cosine, best first),
    as search ``Hit``s. Raises LookupError-style errors of the index when no text vectors exist yet."""
    model = getattr(getattr(settings, "search", None), "text_embed_model", TEXT_MODEL) or TEXT_MODEL
    return get_search_index(settings).knn(model, embed_text(settings, text), k)
