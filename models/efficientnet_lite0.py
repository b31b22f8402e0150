"""EfficientNet-Lite0: ImageNet top-k labels + 1280-d image embedding from one forward pass."""

from __future__ import annotations

from functools import cached_property

import numpy as np

from core.imaging import to_model_input
from models.frames import IMAGE_AND_VIDEO, media_frames
from processors.runtime import Item, ModelHandler
from schemas.events import AnnotationPayload, ImageClassification, Label, MediaUploaded


class EfficientNetLite0(ModelHandler):
    model = "efficientnet_lite0"
    media_types = IMAGE_AND_VIDEO
    outputs = ["EMBEDDING", "PROBS"]
    top_k = 5
    min_score = 0.02  # labels below this are noise for search and facets

    @cached_property
    def labels(self) -> list[str]:
        path = self.settings.triton_repo / self.model / "labels.txt"
        return path.read_text().splitlines()

    def prepare(self, event: MediaUploaded, data: bytes) -> list[Item]:
        frames = media_frames(self.settings, event, data)
        return [Item(event, ms, {"IMAGE": to_model_input(img)}) for ms, img in frames]

    def to_payloads(self, outputs: dict[str, np.ndarray], n: int) -> list[AnnotationPayload]:
        emb, probs = outputs["EMBEDDING"], outputs["PROBS"]
        result: list[AnnotationPayload] = []
        for i in range(n):
            top = np.argsort(-probs[i])[: self.top_k]
            labels = [
                Label(name=self.labels[c], score=round(float(probs[i, c]), 5), class_id=int(c))
                for c in top
                if probs[i, c] >= self.min_score
            ]
            vec = [round(float(x), 6) for x in emb[i]]
            result.append(ImageClassification(labels=labels, embedding=vec, embedding_dim=len(vec)))
        return result
