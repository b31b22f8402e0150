"""COCO-80 objects (MB3-CenterNet on Triton): labelled boxes per image or keyframe; labels and
``object_count`` are search facets, and a video's summary gets each label with its time ranges.

Triton returns the graph's top-100 peaks (``DETECTIONS`` [N,100,6], canvas pixels); the cut by score,
normalisation to the frame and same-class de-duplication run here (``models.centernet.decode``).
"""

from __future__ import annotations

from functools import cached_property
from typing import ClassVar

import numpy as np

from models import centernet
from models.frames import LetterboxedDetector, box_of
from schemas.events import AnnotationPayload, DetectedObject, ObjectDetection


class CocoCenternet(LetterboxedDetector):
    model = "coco_centernet"
    canvas = centernet.SIZE
    outputs = ["DETECTIONS"]
    max_batch = 16
    max_keyframes = 8  # ~60-150 ms per frame on one CPU core
    # below 0.3 the peaks are mostly duplicates and background (measured on the sample photos: the person in
    # the astronaut photo scores 0.61, the cup 0.58, the motorcycle 0.70, the cat 0.47)
    threshold: ClassVar[float] = centernet.SCORE_THRESHOLD
    iou_threshold: ClassVar[float] = centernet.IOU_THRESHOLD

    @cached_property
    def labels(self) -> list[str]:
        return centernet.load_labels(self.settings.triton_repo / self.model)

    def to_payloads(self, outputs: dict[str, np.ndarray], n: int) -> list[AnnotationPayload]:
        return [self.payload(outputs["DETECTIONS"][i], outputs["SIZE"][i]) for i in range(n)]

    def payload(self, det: np.ndarray, size: np.ndarray) -> ObjectDetection:
        """One image's DETECTIONS [100,6] + its content (width, height) in the canvas -> the annotation."""
        found = centernet.decode(det, size, self.labels, self.threshold, self.iou_threshold)
        objects = [
            DetectedObject(label=d.label, class_id=d.class_id, score=round(d.score, 5),
                           box=box_of(d.box))
            for d in found
        ]
        return ObjectDetection(object_count=len(objects), objects=objects)
