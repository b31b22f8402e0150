"""NSFW moderation (NudeNet on Triton): body-part regions per image or keyframe, and an nsfw flag.

Optional model (AGPL-3.0 licence text, docs/models.md): the processor runs only where the ``nudenet``
package is installed and ``nsfw_nudenet`` is in ``Settings.models``.

Triton returns the raw YOLOv8 head (``RAW`` [N,22,2100]); decoding + per-class NMS run here in numpy
(``argus.modelzoo.nudenet.decode``). ``nsfw_score`` is the highest score of an explicit (exposed) region
class; ``nsfw = nsfw_score >= threshold``. The default 0.5 equals ``search.flag_threshold``, the cut
the search filter applies to the same score (``nsfw=exclude|only``), so the stored flag and the search
filter agree; it is also well above the 0.25 region threshold: on the sample photos the strongest
explicit-class false region is ~0.35 (a coffee cup as BUTTOCKS_EXPOSED), reported as a region but not flagged.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from argus.modelzoo import nudenet
from argus.triton import TritonClient
from processors.handlers.frames import IMAGE_AND_VIDEO, letterbox, media_frames
from processors.runtime import Item, ModelHandler
from schemas.events import AnnotationPayload, Box, DetectedObject, MediaUploaded, NsfwDetection


class NsfwNudenet(ModelHandler):
    model = "nsfw_nudenet"
    media_types = IMAGE_AND_VIDEO
    outputs = ["RAW"]
    max_batch = 16
    max_keyframes = 8  # ~50 ms per frame on one CPU core; 8 keyframes cover a video's scenes
    threshold: ClassVar[float] = nudenet.NSFW_THRESHOLD  # nsfw = nsfw_score >= threshold
    region_threshold: ClassVar[float] = nudenet.REGION_THRESHOLD
    iou_threshold: ClassVar[float] = nudenet.IOU_THRESHOLD

    def prepare(self, event: MediaUploaded, data: bytes) -> list[Item]:
        items = []
        for ms, img in media_frames(self.settings, event, data, self.max_keyframes):
            canvas, size = letterbox(img, nudenet.SIZE)
            # SIZE stays here: it is not a model input (see infer), only needed to normalise the boxes
            items.append(Item(event, ms, {"IMAGE": canvas, "SIZE": size}))
        return items

    def infer(self, triton: TritonClient, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = triton.infer(self.model, {"IMAGE": inputs["IMAGE"]}, self.outputs)
        return {**out, "SIZE": inputs["SIZE"]}

    def to_payloads(self, outputs: dict[str, np.ndarray], n: int) -> list[AnnotationPayload]:
        return [self.payload(outputs["RAW"][i], outputs["SIZE"][i]) for i in range(n)]

    def payload(self, raw: np.ndarray, size: np.ndarray) -> NsfwDetection:
        """One image's RAW [22,2100] + its content (width, height) in the canvas -> the annotation."""
        regions = nudenet.decode(raw, size, self.region_threshold, self.iou_threshold)
        score = round(min(1.0, max(0.0, nudenet.nsfw_score(regions))), 5)
        objects = [
            DetectedObject(label=r.label, class_id=r.class_id, score=round(min(1.0, max(0.0, r.score)), 5),
                           box=Box(**dict(zip(("x1", "y1", "x2", "y2"), (round(v, 5) for v in r.box), strict=True))))
            for r in regions
        ]
        return NsfwDetection(nsfw=score >= self.threshold, nsfw_score=score, threshold=self.threshold,
                             regions=objects)
