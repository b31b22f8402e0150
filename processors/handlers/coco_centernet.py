"""COCO-80 objects (MB3-CenterNet on Triton): labelled boxes per image or keyframe; labels and
``object_count`` are search facets, and a video's summary gets each label with its time ranges.

Triton returns the graph's top-100 peaks (``DETECTIONS`` [N,100,6], canvas pixels); the cut by score,
normalisation to the frame and same-class de-duplication run here (``argus.modelzoo.centernet.decode``).
"""

from __future__ import annotations

from functools import cached_property
from typing import ClassVar

import numpy as np

from argus.modelzoo import centernet
from argus.triton import TritonClient
from processors.handlers.frames import IMAGE_AND_VIDEO, letterbox, media_frames
from processors.runtime import Item, ModelHandler
from schemas.events import AnnotationPayload, Box, DetectedObject, MediaUploaded, ObjectDetection


class CocoCenternet(ModelHandler):
    model = "coco_centernet"
    media_types = IMAGE_AND_VIDEO
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

    def prepare(self, event: MediaUploaded, data: bytes) -> list[Item]:
        items = []
        for ms, img in media_frames(self.settings, event, data, self.max_keyframes):
            canvas, size = letterbox(img, centernet.SIZE)
            # SIZE is not a model input (see infer): it only normalises the boxes to the frame
            items.append(Item(event, ms, {"IMAGE": canvas, "SIZE": size}))
        return items

    def infer(self, triton: TritonClient, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = triton.infer(self.model, {"IMAGE": inputs["IMAGE"]}, self.outputs)
        return {**out, "SIZE": inputs["SIZE"]}

    def to_payloads(self, outputs: dict[str, np.ndarray], n: int) -> list[AnnotationPayload]:
        return [self.payload(outputs["DETECTIONS"][i], outputs["SIZE"][i]) for i in range(n)]

    def payload(self, det: np.ndarray, size: np.ndarray) -> ObjectDetection:
        """One image's DETECTIONS [100,6] + its content (width, height) in the canvas -> the annotation."""
        found = centernet.decode(det, size, self.labels, self.threshold, self.iou_threshold)
        objects = [
            DetectedObject(label=d.label, class_id=d.class_id, score=round(d.score, 5),
                           box=Box(**dict(zip(("x1", "y1", "x2", "y2"), (round(v, 5) for v in d.box), strict=True))))
            for d in found
        ]
        return ObjectDetection(object_count=len(objects), objects=objects)
