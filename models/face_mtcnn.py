"""Faces (MTCNN on Triton): boxes + scores per image or keyframe; ``face_count`` is a search facet."""

from __future__ import annotations

import numpy as np

from models.frames import Letterboxed, box_of
from models.suite import FACE_SIZE
from schemas.events import AnnotationPayload, Face, FaceDetection


class FaceMtcnn(Letterboxed):
    model = "face_mtcnn"
    canvas = FACE_SIZE
    outputs = ["BOXES", "SCORES", "COUNT"]
    max_batch = 16
    max_keyframes = 12  # ~0.1-0.3 s per frame on one CPU core

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
