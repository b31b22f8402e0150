"""NSFW moderation (NudeNet on Triton): body-part regions per image or keyframe, and an nsfw flag.

Optional model (AGPL-3.0 licence text, docs/models.md): the processor runs only where the ``nudenet``
package is installed and ``nsfw_nudenet`` is in ``Settings.models``.

Triton returns the raw YOLOv8 head (``RAW`` [N,22,2100]); decoding + per-class NMS run here in numpy
(``models.nudenet.decode``). ``nsfw_score`` is the highest score of an explicit (exposed) region
class; ``nsfw = nsfw_score >= threshold``. The default 0.5 equals ``search.flag_threshold``, the cut
the search filter applies to the same score (``nsfw=exclude|only``), so the stored flag and the search
filter agree; it is also well above the 0.25 region threshold: on the sample photos the strongest
explicit-class false region is ~0.35 (a coffee cup as BUTTOCKS_EXPOSED), reported as a region but not flagged.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from models import nudenet
from models.frames import LetterboxedDetector, box_of
from schemas.events import AnnotationPayload, DetectedObject, NsfwDetection


class NsfwNudenet(LetterboxedDetector):
    model = "nsfw_nudenet"
    canvas = nudenet.SIZE
    outputs = ["RAW"]
    max_batch = 16
    max_keyframes = 8  # ~50 ms per frame on one CPU core; 8 keyframes cover a video's scenes
    threshold: ClassVar[float] = nudenet.NSFW_THRESHOLD  # nsfw = nsfw_score >= threshold
    region_threshold: ClassVar[float] = nudenet.REGION_THRESHOLD
    iou_threshold: ClassVar[float] = nudenet.IOU_THRESHOLD

    def to_payloads(self, outputs: dict[str, np.ndarray], n: int) -> list[AnnotationPayload]:
        return [self.payload(outputs["RAW"][i], outputs["SIZE"][i]) for i in range(n)]

    def payload(self, raw: np.ndarray, size: np.ndarray) -> NsfwDetection:
        """One image's RAW [22,2100] + its content (width, height) in the canvas -> the annotation."""
        regions = nudenet.decode(raw, size, self.region_threshold, self.iou_threshold)
        score = round(min(1.0, max(0.0, nudenet.nsfw_score(regions))), 5)
        objects = [
            DetectedObject(label=r.label, class_id=r.class_id, score=round(min(1.0, max(0.0, r.score)), 5),
                           box=box_of(r.box))
            for r in regions
        ]
        return NsfwDetection(nsfw=score >= self.threshold, nsfw_score=score, threshold=self.threshold,
                             regions=objects)
