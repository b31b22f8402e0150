"""OCR (PP-OCRv4 on Triton): text lines with boxes and confidence; the text goes to full-text search.

Weights: the det/cls/rec ONNX graphs of PyPI ``rapidocr-onnxruntime``, packed into one stored zip by ``build``;
``triton_repo/ocr_ppocr/1/model.py`` runs detection, orientation and recognition.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from core.packages import package_dir
from models.base import CheckResult
from models.frames import Letterboxed, box_of, letterbox
from models.probes import OCR_PROBE, rendered_text, squash, triton_infer
from schemas.events import AnnotationPayload, OcrText, TextLine

OCR_SIZE = 960  # the canvas (config.pbtxt IMAGE dims)
_FILES = {
    "det.onnx": "ch_PP-OCRv4_det_infer.onnx",
    "cls.onnx": "ch_ppocr_mobile_v2.0_cls_infer.onnx",
    "rec.onnx": "ch_PP-OCRv4_rec_infer.onnx",
}


class OcrPpocr(Letterboxed):
    name = "ocr_ppocr"
    cpu_cost_ms = 1000  # docs/models.md throughput
    task = "ocr"
    version = "ppocrv4-48fc40f2"  # prefix of the recogniser's sha256
    source_package = "rapidocr-onnxruntime"
    source_version = "1.4.4"
    licence = "Apache-2.0"
    outputs = ["TEXT", "SCORES", "BOXES", "COUNT"]
    artifact = "ppocr.zip"
    build_params = {"format": "zip(det,cls,rec onnx)", "revision": 1}
    canvas = OCR_SIZE
    fill = 255  # white margin: no edge against the text
    max_batch = 8  # 960x960 canvases: 2.7 MB each
    max_keyframes = 8  # ~0.3-1 s per frame on one CPU core; captions rarely change faster

    # ---- pull / verify ---------------------------------------------------------------------------
    def weights(self) -> Path:
        found = package_dir("rapidocr_onnxruntime", "rapidocr-onnxruntime is not installed (scripts/bootstrap.sh)")
        return found / "models" / _FILES["rec.onnx"]

    def build(self, dst: Path) -> None:
        """The three PP-OCRv4 graphs in one stored (uncompressed) zip, with fixed timestamps: the same
        wheel always gives the same artifact bytes."""
        models = self.weights().parent
        with zipfile.ZipFile(dst, "w", compression=zipfile.ZIP_STORED) as zf:
            for arcname, src in _FILES.items():
                info = zipfile.ZipInfo(arcname, date_time=(2024, 1, 1, 0, 0, 0))
                zf.writestr(info, (models / src).read_bytes())

    def check(self, client: Any) -> CheckResult:
        arr, size = letterbox(rendered_text(), OCR_SIZE)
        out = triton_infer(client, self.name, {"IMAGE": arr[None], "SIZE": size[None]}, self.outputs)
        n = int(out["COUNT"][0, 0])
        lines = [t.decode() for t in out["TEXT"][0, :n]]
        got = squash(" ".join(lines))
        ok = all(squash(line) in got for line in OCR_PROBE)
        return CheckResult(ok, f"rendered {list(OCR_PROBE)} read back as {lines}")

    # ---- the processor ---------------------------------------------------------------------------
    def to_payloads(self, outputs: dict[str, np.ndarray], n: int) -> list[AnnotationPayload]:
        result: list[AnnotationPayload] = []
        for i in range(n):
            k = int(outputs["COUNT"][i, 0])
            lines = []
            for raw, score, b in zip(outputs["TEXT"][i, :k], outputs["SCORES"][i, :k], outputs["BOXES"][i, :k],
                                     strict=True):
                text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
                lines.append(TextLine(text=text, score=round(float(score), 5), box=box_of(b)))
            result.append(OcrText(text="\n".join(line.text for line in lines), lines=lines))
        return result
