"""Text embedding of each asset's annotation text (MiniLM on Triton).

Not a media model: it does not read the original but the other models' annotation topics (plus the
upload's title/description), so its processor is ``processors.text_embedder.TextEmbedder``, not the
shared media runtime. The class is here so that the registry, ``argus run processor text_embed`` and
the model version work like every other model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from processors.runtime import Item, ModelHandler
from schemas.events import AnnotationPayload, MediaUploaded


class TextEmbed(ModelHandler):
    model = "text_embed"
    media_types = frozenset()  # consumes annotations, not media
    outputs = ["EMBEDDING"]
    max_batch = 64

    def make_runner(self) -> Any:
        """The worker that runs this model (``argus run processor text_embed``)."""
        from processors.text_embedder import TextEmbedder

        return TextEmbedder(self.settings, self)

    def prepare(self, event: MediaUploaded, data: bytes) -> list[Item]:  # pragma: no cover - not a media model
        raise NotImplementedError("text_embed consumes annotation topics (processors/text_embedder.py)")

    def to_payloads(self, outputs: dict[str, np.ndarray], n: int) -> list[AnnotationPayload]:  # pragma: no cover
        raise NotImplementedError("text_embed consumes annotation topics (processors/text_embedder.py)")
