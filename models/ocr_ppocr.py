"""OCR (PP-OCRv4 on Triton): text lines with boxes and confidence; the text goes to full-text search."""

from __future__ import annotations

import numpy as np

from models.frames import Letterboxed, box_of
from models.suite import OCR_SIZE
from schemas.events import AnnotationPayload, OcrText, TextLine


class OcrPpocr(Letterboxed):
    model = "ocr_ppocr"
    canvas = OCR_SIZE
    fill = 255  # white margin: no edge against the text
    outputs = ["TEXT", "SCORES", "BOXES", "COUNT"]
    max_batch = 8  # 960x960 canvases: 2.7 MB each
    max_keyframes = 8  # ~0.3-1 s per frame on one CPU core; captions rarely change faster

    def to_payloads(self, outputs: dict[str, np.ndarray], n: int) -> list[AnnotationPayload]:
        result: list[AnnotationPayload] = []
        for i in range(n):
            k = int(outputs["COUNT"][i, 0])
            lines = []
            for raw, score, b in zip(outputs["TEXT"][i, :k], outputs["SCORES"][i, :k], outputs["BOXES"][i, :k],
                                     strict=True):
                text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
                box = box_of(b)
                lines.append(TextLine(text=text, score=round(float(score), 5), box=box))
            result.append(OcrText(text="\n".join(line.text for line in lines), lines=lines))
        return result
