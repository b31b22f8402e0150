"""Triton python-backend model: OCR with PaddleOCR's PP-OCRv4 (text detection -> angle classification
-> CRNN recognition), three ONNX graphs run by onnxruntime through the RapidOCR pipeline code.

Weights: ``ppocr.zip`` next to this file (``det.onnx``, ``cls.onnx``, ``rec.onnx``; built by
``argus models pull`` from the ``rapidocr-onnxruntime`` 1.4.4 wheel, Apache-2.0). The recogniser's
character table is stored in the rec graph's metadata.

IO (batched, fixed shapes):
  IMAGE  uint8 [960,960,3]  the frame letterboxed into the top-left corner (aspect kept)
  SIZE   int32 [2]          width, height of the frame inside the canvas
  TEXT   bytes [64]         one text line per row, reading order; unused rows are b""
  SCORES fp32 [64]          recognition confidence
  BOXES  fp32 [64,4]        x1,y1,x2,y2 of each line, normalised to the frame (0..1)
  COUNT  int32 [1]          lines found (<= 64)
"""

import os
import tempfile
import zipfile

import numpy as np

try:  # Triton's stub puts <model>/ on sys.path; `argus models pull` copies the shared loop there (README.md)
    from triton_batching import BatchingModel
except ImportError:  # loaded by path outside Triton (tests, benchmarks): the source in the Argus tree
    from models.triton_batching import BatchingModel  # inside Triton: run `argus models pull` (copies it)

MAX_LINES = 64


class Core:
    def __init__(self, version_dir, params=None):
        from rapidocr_onnxruntime import RapidOCR

        params = params or {}
        archive = os.path.join(version_dir, "ppocr.zip")
        self._tmp = tempfile.TemporaryDirectory(prefix="ppocr-")
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(self._tmp.name)
        paths = {k: os.path.join(self._tmp.name, f"{k}.onnx") for k in ("det", "cls", "rec")}
        threads = int(params.get("intra_op_threads") or 1)
        self.min_score = float(params.get("min_score") or 0.5)
        self.engine = RapidOCR(det_model_path=paths["det"], cls_model_path=paths["cls"],
                               rec_model_path=paths["rec"], intra_op_num_threads=threads,
                               inter_op_num_threads=1, text_score=self.min_score)

    def read(self, rgb):
        """rgb uint8 [H,W,3] -> [(text, score, (x1,y1,x2,y2) pixels)] in reading order."""
        result, _ = self.engine(np.ascontiguousarray(rgb))
        lines = []
        for quad, text, score in result or []:
            pts = np.asarray(quad, dtype=np.float32)
            text = str(text).strip()
            if text and float(score) >= self.min_score:
                lines.append((text, float(score), (*pts.min(axis=0), *pts.max(axis=0))))
        return lines

    def infer(self, inputs):
        images, sizes = inputs["IMAGE"], inputs["SIZE"]
        n = images.shape[0]
        texts = np.full((n, MAX_LINES), b"", dtype=object)
        scores = np.zeros((n, MAX_LINES), np.float32)
        boxes = np.zeros((n, MAX_LINES, 4), np.float32)
        counts = np.zeros((n, 1), np.int32)
        for i in range(n):
            w, h = (int(v) for v in sizes[i])
            w, h = max(1, min(w, images.shape[2])), max(1, min(h, images.shape[1]))
            lines = self.read(images[i, :h, :w])[:MAX_LINES]
            for j, (text, score, box) in enumerate(lines):
                texts[i, j] = text.encode("utf-8")
                scores[i, j] = min(1.0, max(0.0, score))
                boxes[i, j] = np.clip(np.asarray(box, np.float32) / np.array([w, h, w, h], np.float32), 0.0, 1.0)
            counts[i, 0] = len(lines)
        return {"TEXT": texts, "SCORES": scores, "BOXES": boxes, "COUNT": counts}

    def close(self):
        self._tmp.cleanup()


class TritonPythonModel(BatchingModel):
    """``Core`` behind the shared execute loop (``triton_batching``): requests stacked, split back."""

    artifact = "ppocr.zip"

    def load(self, version_dir, params, args):
        self.core = Core(version_dir, params)

    def run(self, batch):
        return self.core.infer(batch)

    def unload(self):
        if getattr(self, "core", None) is not None:
            self.core.close()
        self.core = None
