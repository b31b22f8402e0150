"""Captions (BLIP on Triton): one sentence per image or keyframe, full-text searchable.

Optional model: it needs BLIP weights the operator configured (``ARGUS_CAPTION__WEIGHTS``); without them the
supervisor does not start this processor (models/caption.py). Videos get one caption per keyframe
(at most ``max_keyframes``: generation is the costliest step on CPU) and the generic summary, whose text
segments are the distinct captions with their time ranges.
"""

from __future__ import annotations

import numpy as np

from models.caption import to_model_input
from models.frames import IMAGE_AND_VIDEO, media_frames
from processors.runtime import Item, ModelHandler
from schemas.events import AnnotationPayload, Caption, MediaUploaded


class CaptionBlip(ModelHandler):
    model = "caption_blip"
    media_types = IMAGE_AND_VIDEO
    outputs = ["CAPTION", "SCORE"]
    max_batch = 8
    max_keyframes = 4  # BLIP-base on one CPU thread: 3-6 s per frame (docs/models.md)

    def prepare(self, event: MediaUploaded, data: bytes) -> list[Item]:
        cfg = self.settings.caption
        params = {"MAX_NEW_TOKENS": np.array([cfg.max_new_tokens], np.int32),
                  "NUM_BEAMS": np.array([cfg.num_beams], np.int32)}
        return [Item(event, ms, {"IMAGE": to_model_input(img), **params})
                for ms, img in media_frames(self.settings, event, data, self.max_keyframes)]

    def to_payloads(self, outputs: dict[str, np.ndarray], n: int) -> list[AnnotationPayload]:
        result: list[AnnotationPayload] = []
        for i in range(n):
            raw = outputs["CAPTION"][i, 0]
            text = (raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)).strip()
            score = round(min(1.0, max(0.0, float(outputs["SCORE"][i, 0]))), 5)
            result.append(Caption(text=text, score=score))
        return result
