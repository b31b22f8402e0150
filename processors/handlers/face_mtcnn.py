"""Faces (MTCNN on Triton): boxes + scores per image or keyframe; ``face_count`` is a search facet."""

from __future__ import annotations

import numpy as np

from argus.modelzoo.suite import FACE_SIZE
from processors.handlers.frames import IMAGE_AND_VIDEO, box_of, letterbox, media_frames
from processors.runtime import Item, ModelHandler
from schemas.events import AnnotationPayload, Face, FaceDetection, MediaUploaded


class FaceMtcnn(ModelHandler):
    model = "face_mtcnn"
    media_types = IMAGE_AND_VIDEO
    outputs = ["BOXES", "SCORES", "COUNT"]
    max_batch = 16
    max_keyframes = 12  # ~0.1-0.3 s per frame on one CPU core

    def prepare(self, event: MediaUploaded, data: bytes) -> list[Item]:
        items = []
        for ms, img in media_frames(self.settings, event, data, self.max_keyframes):
            canvas, size = letterbox(img, FACE_SIZE)
            items.append(Item(event, ms, {"IMAGE": canvas, "SIZE": size}))
        return items

    def to_payloads(self, outputs: dict[str, np.ndarray], n: int) -> list[AnnotationPayload]:
        result: list[AnnotationPayload] = []
        for i in range(n):
            k = int(outputs["COUNT"][i, 0])
            faces = [
                Face(box=box_of(b),
                     score=round(float(s), 5))
                for b, s in zip(outputs["BOXES"][i, :k], outputs["SCORES"][i, :k], strict=True)
            ]
            result.append(FaceDetection(face_count=len(faces), faces=faces))
        return result
