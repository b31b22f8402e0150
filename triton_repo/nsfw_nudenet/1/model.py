"""Triton python-backend model: runs NudeNet's wrapped ``model.onnx`` (next to this file) with onnxruntime on CPU.

Used by the embedded/CI server (``configs/cpu.pbtxt``, ``--model-config-name=cpu``), which has no
onnxruntime backend; production serves the same ``model.onnx`` with the onnxruntime backend
(``config.pbtxt``). Self-contained on purpose: it runs inside Triton's stub, where Argus need not be
installed.

IO: ``IMAGE`` uint8 [N,320,320,3] (letterboxed RGB; /255 and NCHW are in the graph) -> ``RAW`` float32
[N,22,2100] (YOLOv8 head: cx, cy, w, h + 18 class scores per anchor). The graph's batch axis is dynamic,
so all requests of one ``execute`` call go through a single ORT run and are split back; decoding and NMS
happen in the processor (models/nudenet.py).

numpy: the project pins numpy<2 (python backend 2.51 returns empty tensors for numpy 2 arrays).
"""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

INPUT = "IMAGE"
OUTPUT = "RAW"


class TritonPythonModel:
    def initialize(self, args):
        """Load the ONNX graph once per model instance."""
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        if not os.path.exists(path):
            raise pb_utils.TritonModelException(
                f"{path} is missing; run `pip install --no-deps nudenet==3.4.2` and `argus models pull nsfw_nudenet`"
            )
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(params.get("intra_op_threads") or 2)
        opts.inter_op_num_threads = 1
        # idle ORT threads sleep instead of spinning: Triton shares the cores with decoding, Kafka and sinks
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        inp = next(i for i in config["input"] if i["name"] == INPUT)
        self.input_dims = tuple(int(d) for d in inp["dims"])
        out = next(o for o in config["output"] if o["name"] == OUTPUT)
        self.output_dtype = pb_utils.triton_string_to_numpy(out["data_type"])

    def execute(self, requests):
        """One response per request; a bad request gets its own error and never fails the others."""
        responses = [None] * len(requests)
        arrays, owners = [], []
        for i, request in enumerate(requests):
            try:
                tensor = pb_utils.get_input_tensor_by_name(request, INPUT)
                if tensor is None:
                    raise ValueError(f"missing input {INPUT}")
                arr = tensor.as_numpy()
                if arr.dtype != np.uint8 or tuple(arr.shape[1:]) != self.input_dims:
                    raise ValueError(
                        f"expected uint8 [N,{','.join(map(str, self.input_dims))}], got {arr.dtype} {list(arr.shape)}"
                    )
                arrays.append(arr)
                owners.append(i)
            except Exception as exc:  # noqa: BLE001 - reported in that request's response
                responses[i] = pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc)))
        if arrays:
            try:
                batch = arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0)
                (raw,) = self.session.run([OUTPUT], {INPUT: batch})
            except Exception as exc:  # noqa: BLE001 - the whole batch failed: every request says why
                for i in owners:
                    responses[i] = pb_utils.InferenceResponse(error=pb_utils.TritonError(f"onnxruntime failed: {exc}"))
                return responses
            start = 0
            for i, arr in zip(owners, arrays, strict=True):
                stop = start + arr.shape[0]
                out = pb_utils.Tensor(OUTPUT, np.ascontiguousarray(raw[start:stop], dtype=self.output_dtype))
                responses[i] = pb_utils.InferenceResponse(output_tensors=[out])
                start = stop
        return responses

    def finalize(self):
        self.session = None
