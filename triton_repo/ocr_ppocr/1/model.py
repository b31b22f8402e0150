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

import json
import os
import tempfile
import zipfile

import numpy as np

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


class TritonPythonModel:
    """Concatenates the requests of one execute() call, runs Core once, splits the outputs back;
    a malformed request gets its own error and never fails the others."""

    def initialize(self, args):
        import triton_python_backend_utils as pb_utils

        self.pb = pb_utils
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        if not os.path.exists(os.path.join(version_dir, "ppocr.zip")):
            raise pb_utils.TritonModelException(f"{version_dir}/ppocr.zip is missing; run `argus models pull`")
        self.core = Core(version_dir, params)
        self.inputs = {i["name"]: tuple(int(d) for d in i["dims"]) for i in config["input"]}
        self.outputs = [o["name"] for o in config["output"]]

    def execute(self, requests):
        pb = self.pb
        responses = [None] * len(requests)
        batches, owners = [], []
        for i, request in enumerate(requests):
            try:
                arrays = {}
                for name, dims in self.inputs.items():
                    tensor = pb.get_input_tensor_by_name(request, name)
                    if tensor is None:
                        raise ValueError(f"missing input {name}")
                    arr = tensor.as_numpy()
                    if tuple(arr.shape[1:]) != dims:
                        raise ValueError(f"{name}: expected [N,{','.join(map(str, dims))}], got {list(arr.shape)}")
                    arrays[name] = arr
                batches.append(arrays)
                owners.append(i)
            except Exception as exc:  # noqa: BLE001 - reported in that request's response
                responses[i] = pb.InferenceResponse(error=pb.TritonError(str(exc)))
        if batches:
            try:
                merged = {k: np.concatenate([b[k] for b in batches]) for k in self.inputs}
                result = self.core.infer(merged)
            except Exception as exc:  # noqa: BLE001
                for i in owners:
                    responses[i] = pb.InferenceResponse(error=pb.TritonError(f"OCR failed: {exc}"))
                return responses
            start = 0
            for i, b in zip(owners, batches, strict=True):
                stop = start + len(next(iter(b.values())))
                responses[i] = pb.InferenceResponse(output_tensors=[
                    pb.Tensor(name, np.ascontiguousarray(result[name][start:stop])) for name in self.outputs])
                start = stop
        return responses

    def finalize(self):
        if getattr(self, "core", None) is not None:
            self.core.close()
        self.core = None
