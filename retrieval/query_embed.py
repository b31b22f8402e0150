"""Query-time embeddings through Triton: "more like this picture", region search, semantic text.

An image query goes through the SAME processor handler that indexed the archive (its ``prepare``,
``infer`` and ``to_payloads``), so the query vector and the stored vectors share one space and any
model whose payload carries an embedding (EfficientNet today, CLIP when its weights are installed)
works without model-specific code here. A region query crops the user's box first (MAAM's
region-based retrieval). Text queries use the MiniLM text model (retrieval/semantic.py).

Queries never wait for Triton the way processors do: one attempt, and a clear error if it is down.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from core.imaging import MediaDecodeError, load_image
from core.settings import Settings
from core.triton import TritonClient
from models.registry import get_model
from models.text_embed import TextEmbed
from retrieval.search.interface import QueryError
from schemas.events import MediaUploaded

MIN_REGION_PX = 8


class EmbedUnavailable(RuntimeError):
    """The model server cannot answer now (the API answers 503)."""


class _OneShotTriton(TritonClient):
    """A query must not retry forever like a processor: one attempt, errors surface at once."""

    def infer(self, model: str, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        try:
            return self.infer_once(model, inputs, outputs)
        except Exception as exc:  # noqa: BLE001 - transport or server error: the caller answers 503
            raise EmbedUnavailable(f"model server: {model}: {exc}") from exc


@dataclass(frozen=True)
class Region:
    """A box on the image: fractions of width/height (0..1) unless ``pixels``."""

    x1: float
    y1: float
    x2: float
    y2: float
    pixels: bool = False

    @classmethod
    def parse(cls, text: str, units: str = "fraction") -> Region:
        try:
            x1, y1, x2, y2 = (float(v) for v in text.split(","))
        except ValueError:
            raise QueryError(f"box must be 'x1,y1,x2,y2' (got {text!r})") from None
        if units not in ("fraction", "px"):
            raise QueryError("box_units must be 'fraction' or 'px'")
        r = cls(x1, y1, x2, y2, units == "px")
        if min(x1, y1, x2, y2) < 0 or (not r.pixels and max(x1, y1, x2, y2) > 1):
            raise QueryError("box coordinates must be within the image (fractions 0..1 unless box_units=px)")
        if x2 <= x1 or y2 <= y1:
            raise QueryError("box must have x2 > x1 and y2 > y1")
        return r

    def crop(self, img: Image.Image) -> Image.Image:
        w, h = img.size
        sx, sy = (1.0, 1.0) if self.pixels else (float(w), float(h))
        left, top = round(self.x1 * sx), round(self.y1 * sy)
        right, bottom = min(w, round(self.x2 * sx)), min(h, round(self.y2 * sy))
        if right - left < MIN_REGION_PX or bottom - top < MIN_REGION_PX:
            raise QueryError(f"the region is smaller than {MIN_REGION_PX}x{MIN_REGION_PX} pixels of a {w}x{h} image")
        return img.crop((left, top, right, bottom))


class QueryEmbedder:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.triton = _OneShotTriton(settings)

    def image(self, model: str, data: bytes, region: Region | None = None) -> list[float]:
        """The ``model`` embedding of an uploaded image (or of a region of it)."""
        try:
            handler = get_model(self.settings, model)
        except KeyError as exc:
            raise QueryError(str(exc).strip("'\"")) from None
        try:
            img = load_image(data, self.settings.limits.max_image_pixels)
        except MediaDecodeError as exc:
            raise QueryError(f"query image: {exc.reason}") from None
        if region is not None:
            img = region.crop(img)
        buf = io.BytesIO()
        img.save(buf, "PNG")  # the handler decodes bytes exactly as it does for an upload
        probe = MediaUploaded(event_id="query", asset_id="query", bucket="-", object_key="-", media_type="image",
                              content_type="image/png", size_bytes=buf.tell(), filename="query.png")
        try:
            items = handler.prepare(probe, buf.getvalue())
        except MediaDecodeError as exc:
            raise QueryError(f"query image: {exc.reason}") from None
        if not items:
            raise QueryError(f"model {model} takes no input from an image")
        inputs = {name: np.stack([items[0].row[name]]) for name in items[0].row}
        payload = handler.to_payloads(handler.infer(self.triton, inputs), 1)[0]
        emb = payload.search_fields().embedding
        if emb is None:
            raise QueryError(f"model {model} produces no embedding")
        return [float(x) for x in emb]

    def text(self, text: str, model: str | None = None) -> list[float]:
        """Semantic text embedding (MiniLM) of a query sentence."""
        model = model or self.settings.search.text_embed_model
        if not (self.settings.triton_repo / model / "tokenizer.json").exists():
            raise EmbedUnavailable(f"text model {model} is not installed (run `argus models pull`)")
        embedder = get_model(self.settings, model)
        if not isinstance(embedder, TextEmbed):
            raise QueryError(f"model {model} is not a text embedding model")
        return [float(x) for x in embedder.embed([text], self.triton)[0]]

    def close(self) -> None:
        self.triton.close()
