"""Triton python-backend model: runs ``model.onnx`` (a CLIP tower exported by ``argus models pull``, next to
this file) with onnxruntime. The same file serves ``clip`` (IMAGE uint8 [N,224,224,3]) and ``clip_text``
(TOKENS int64 [N,77]); both answer EMBEDDING fp32 [N,512], L2-normalised.

Used by the embedded/CI server (``configs/cpu.pbtxt``); production serves the same ``model.onnx`` with the
onnxruntime backend (``config.pbtxt``). All requests of one ``execute`` call (fixed per-row shape) go
through one ORT run. Self-contained (no Argus imports).
"""

import json
import os

import numpy as np

_DTYPES = {"TYPE_UINT8": np.uint8, "TYPE_INT64": np.int64, "TYPE_FP32": np.float32}


class TritonPythonModel:
    def initialize(self, args):
        import onnxruntime as ort
        import triton_python_backend_utils as pb_utils

        self.pb = pb_utils
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        if not os.path.exists(path):
            raise pb_utils.TritonModelException(
                f"{path} is missing; configure CLIP weights (ARGUS_CLIP__WEIGHTS) and run `argus models pull`")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(params.get("intra_op_threads") or 1)
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # idle threads sleep
        self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        (inp,) = config["input"]
        self.input_name = inp["name"]
        self.input_dtype = _DTYPES[inp["data_type"]]
        self.row_shape = tuple(int(d) for d in inp["dims"])
        self.output_names = [o["name"] for o in config["output"]]

    def execute(self, requests):
        pb = self.pb
        responses = [None] * len(requests)
        members = []  # (request index, array)
        for i, request in enumerate(requests):
            try:
                tensor = pb.get_input_tensor_by_name(request, self.input_name)
                if tensor is None:
                    raise ValueError(f"missing input {self.input_name}")
                arr = tensor.as_numpy()
                if arr.shape[1:] != self.row_shape:
                    want, got = list(self.row_shape), list(arr.shape[1:])
                    raise ValueError(f"{self.input_name} rows must be {want}, got {got}")
                members.append((i, arr.astype(self.input_dtype, copy=False)))
            except Exception as exc:  # noqa: BLE001 - reported in that request's response
                responses[i] = pb.InferenceResponse(error=pb.TritonError(str(exc)))
        if members:
            try:
                feed = np.concatenate([a for _, a in members])
                results = self.session.run(self.output_names, {self.input_name: feed})
            except Exception as exc:  # noqa: BLE001
                for i, _ in members:
                    responses[i] = pb.InferenceResponse(error=pb.TritonError(f"onnxruntime failed: {exc}"))
                return responses
            start = 0
            for i, arr in members:
                stop = start + arr.shape[0]
                responses[i] = pb.InferenceResponse(output_tensors=[
                    pb.Tensor(n, np.ascontiguousarray(r[start:stop], dtype=np.float32))
                    for n, r in zip(self.output_names, results, strict=True)])
                start = stop
        return responses

    def finalize(self):
        self.session = None
